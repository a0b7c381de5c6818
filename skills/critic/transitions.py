"""Skill-level transitions (s, z, s') of tokenised source episodes, with the per-episode tables that goal, mask and
return-bound sampling read (achieved positions, window tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mstt.skills.masks import PAD_TOKEN

Tensor = torch.Tensor


@dataclass
class SkillTransitions:
    """Skill-level transitions (s, z, s') of the source data plus what goal and mask sampling needs.

    Window convention (the same as ``skills.windows.position_windows``): window w of an episode starts at step
    t = w * stride and covers steps t .. t + H - 1; its skill is z, ``s`` = observation t and
    ``s_next`` = observation t + H (the start of the next, non-overlapping skill).
    """

    s: Tensor
    """(N, S) observation at the window's start."""
    z: Tensor
    """(N,) long skill token of the window."""
    s_next: Tensor
    """(N, S) observation H steps later."""
    positions: Tensor
    """(N, H, P) positions reached while the skill runs: steps t + 1 .. t + H (rewards are read here)."""
    episode: Tensor
    """(N,) long episode index of each transition."""
    window: Tensor
    """(N,) long window index w inside its episode (indexes ``episode_tokens``)."""
    start: Tensor
    """(N,) long step t at which the window starts."""
    achieved: Tensor
    """(E, T_max, P) every episode's achieved positions, zero-padded past ``episode_length``."""
    episode_length: Tensor
    """(E,) long number of positions of each episode (T + 1)."""
    episode_tokens: Tensor
    """(E, W_max) long tokens of each episode's windows in time order, padded with PAD_TOKEN."""
    episode_windows: Tensor
    """(E,) long number of windows (with a successor state) of each episode."""
    horizon: int
    """H, steps per skill window."""
    stride: int
    """Steps between consecutive window starts."""
    num_skills: int
    """L, the tokenizer's codebook size."""

    def __post_init__(self) -> None:
        n = self.s.shape[0]
        for name in ("z", "s_next", "positions", "episode", "window", "start"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(
                    f"SkillTransitions.{name} has {getattr(self, name).shape[0]} rows but s has {n}; "
                    "every per-transition tensor needs one row per transition"
                )
        if n and (int(self.z.min()) < 0 or int(self.z.max()) >= self.num_skills):
            raise ValueError(
                f"SkillTransitions.z must lie in [0, num_skills={self.num_skills}), "
                f"got range [{int(self.z.min())}, {int(self.z.max())}]"
            )

    def __len__(self) -> int:
        return int(self.s.shape[0])

    @property
    def state_dim(self) -> int:
        return int(self.s.shape[1])

    @property
    def pos_dim(self) -> int:
        return int(self.positions.shape[2])

    def to(self, device: torch.device | str) -> SkillTransitions:
        """A copy with every tensor on ``device``."""
        moved: dict[str, Any] = {
            name: value.to(device) if isinstance(value, Tensor) else value for name, value in vars(self).items()
        }
        return SkillTransitions(**moved)


def window_count(num_positions: int, horizon: int, stride: int) -> int:
    """Windows ``position_windows`` cuts from ``num_positions`` positions (some may lack a successor state)."""
    return 0 if num_positions < horizon else (num_positions - horizon) // stride + 1


def build_skill_transitions(
    episodes: Sequence[dict[str, Any]],
    tokens: Sequence[Tensor | np.ndarray],
    horizon: int,
    stride: int,
    num_skills: int | None = None,
) -> SkillTransitions:
    """Turn tokenised episodes into skill transitions.

    Args:
        episodes: dicts with "observations" (T+1, S) and "positions" (T+1, P) (float arrays or tensors).
        tokens: per episode, the (W,) tokens of ``position_windows(positions, horizon, stride)``. The last window
            has no successor state when t + H = T + 1 and is dropped; passing only the windows that have one
            (W - 1 tokens then) is accepted too.
        horizon: H, the tokenizer's window length.
        stride: steps between window starts (stride = H gives back-to-back skills).
        num_skills: L, the tokenizer's codebook size; default max token + 1 (pass ``tokenizer.codebook_size``:
            a token unseen in the data is still a valid mask entry).

    Returns:
        SkillTransitions on the CPU.
    """
    if len(episodes) != len(tokens):
        raise ValueError(f"got {len(episodes)} episodes but {len(tokens)} token sequences; pass one per episode")
    if horizon < 1 or stride < 1:
        raise ValueError(f"horizon and stride must be >= 1, got horizon={horizon}, stride={stride}")
    rows: dict[str, list[Tensor]] = {k: [] for k in ("s", "z", "s_next", "positions", "episode", "window", "start")}
    achieved: list[Tensor] = []
    episode_tokens: list[Tensor] = []
    for index, (episode, episode_tok) in enumerate(zip(episodes, tokens, strict=True)):
        obs = torch.as_tensor(np.asarray(episode["observations"]), dtype=torch.float32)
        pos = torch.as_tensor(np.asarray(episode["positions"]), dtype=torch.float32)
        if obs.ndim != 2 or pos.ndim != 2 or obs.shape[0] != pos.shape[0]:
            raise ValueError(
                f"episode {index}: observations {tuple(obs.shape)} and positions {tuple(pos.shape)} must be "
                "(T+1, S) and (T+1, P) with the same T"
            )
        tok = torch.as_tensor(np.asarray(episode_tok), dtype=torch.long).reshape(-1)
        all_windows = window_count(pos.shape[0], horizon, stride)
        with_successor = window_count(pos.shape[0] - 1, horizon, stride)  # needs step t + H to exist
        if tok.shape[0] not in (all_windows, with_successor):
            raise ValueError(
                f"episode {index}: {tok.shape[0]} tokens, expected {all_windows} (one per "
                f"position_windows(positions, horizon={horizon}, stride={stride}) window) or {with_successor}"
            )
        tok = tok[:with_successor]
        starts = torch.arange(with_successor) * stride  # (W,)
        steps = starts[:, None] + torch.arange(1, horizon + 1)[None]  # (W, H): t+1 .. t+H
        rows["s"].append(obs[starts])
        rows["z"].append(tok)
        rows["s_next"].append(obs[starts + horizon])
        rows["positions"].append(pos[steps])
        rows["episode"].append(torch.full((with_successor,), index, dtype=torch.long))
        rows["window"].append(torch.arange(with_successor))
        rows["start"].append(starts)
        achieved.append(pos)
        episode_tokens.append(tok)
    if not achieved:
        raise ValueError("no episodes given")
    cat = {k: torch.cat(v) for k, v in rows.items()}
    if cat["s"].shape[0] == 0:
        raise ValueError(f"no episode is long enough for one window of horizon {horizon} plus a successor state")
    max_len = max(a.shape[0] for a in achieved)
    padded = torch.zeros(len(achieved), max_len, achieved[0].shape[1])
    for i, a in enumerate(achieved):
        padded[i, : a.shape[0]] = a
    max_windows = max(1, max(t.shape[0] for t in episode_tokens))
    token_table = torch.full((len(episode_tokens), max_windows), PAD_TOKEN, dtype=torch.long)
    for i, t in enumerate(episode_tokens):
        token_table[i, : t.shape[0]] = t
    inferred = int(cat["z"].max()) + 1
    if num_skills is not None and num_skills < inferred:
        raise ValueError(f"num_skills={num_skills} but the tokens reach {inferred - 1}; pass the codebook size")
    return SkillTransitions(
        **cat,
        achieved=padded,
        episode_length=torch.tensor([a.shape[0] for a in achieved], dtype=torch.long),
        episode_tokens=token_table,
        episode_windows=torch.tensor([t.shape[0] for t in episode_tokens], dtype=torch.long),
        horizon=horizon,
        stride=stride,
        num_skills=num_skills if num_skills is not None else inferred,
    )
