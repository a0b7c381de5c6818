"""Goal-conditioned masked-Bellman critic Q(s, z, m, g) over discrete skill tokens, with its skill prior p(z | s).
Trained offline on source data: a masked skill leads to an absorbing sink, and the bootstrap maxes only over
skills that are both unmasked and in the data's support at the next state.

Training recipe (and why):

* Masks per sample are i.i.d. Bernoulli(``keep_prob``) or, with probability ``structured_mask_fraction``, the
  union of the tokens of a few contiguous data segments. A prototype trained on Bernoulli masks alone collapsed
  on demo masks (which cover 11-18 % of the tokens and are spatially coherent). Some structured masks are
  *anchored*: one segment contains the sample's own window, as a demo passing through ``s`` would, so values
  propagate along masked paths instead of almost every structured sample hitting the sink.
* Bellman max restricted to skills with prior p(z' | s') >= ``prior_threshold`` (absolute) or
  >= ``prior_threshold`` * max_z p(z | s') (relative): the critic is trained on data skills only, so the max
  over out-of-support skills would read untrained, over-estimated values. The prior is *not* applied at
  planning time (the planner's candidates already come from the data-trained generator; filtering them
  again hurt in the prototype).
* Target smoothing: mellowmax, tau * log(mean_{feasible} exp(Q / tau)), instead of a hard max. It is a
  non-expansion, so the masked operator stays a contraction, it never exceeds the max (no logsumexp-style
  over-estimation), and it does not flip its bootstrap between near-tied skills from one step to the next.
  ``target_temperature = 0`` gives the hard max.
* Demo-like samples: a share ``segment_goal_fraction`` of the anchored structured masks take as goal the end of
  their own segment. That is the deployment case (mask = the tokens of one demo, goal = where the demo ends); with
  hindsight goals alone a segment mask rarely contains a path to the goal, and the critic learned that almost
  nothing is reachable under a demo-sized mask (values near 0 far from the goal, so it could not rank skills).
* Data-return lower bound (``return_bound``): where the data's own continuation from the sample reaches the goal
  using only unmasked skills (every H-step window it runs, in order, has m(z) = 1), that continuation is a
  feasible policy under m, so its discounted return gamma_H ** j lower-bounds the masked optimum. The target is
  max(masked Bellman target, bound). It carries value along a long route in one update instead of one skill per
  round of bootstrapping through the network, and never raises a target above what the data shows is possible.
* Clipped double Q: ``n_critics`` online nets, the target is the min over their soft-updated target copies;
  ``q_values`` also returns that min, the conservative choice at planning time.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from tqdm.auto import tqdm

from mstt.skills.checkpoint import config_from_dict, load_module_state, load_state, save_module
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

CHECKPOINT_KIND = "masked_critic"
TERMINATION_REWARD = 0.0
"""r_term: the value of the absorbing sink a masked skill leads to (and the bootstrap when nothing is feasible)."""
GOAL_REWARD = 1.0
"""Skill-level reward when the window's positions come within the goal radius of g (the episode then ends)."""
DEFAULT_GOAL_RADIUS = 0.45
"""PointMaze's success radius (world units)."""
DEFAULT_PRIOR_THRESHOLD = 0.01
PAD_TOKEN = -1
"""Fills the per-episode token table past an episode's last window."""
STD_FLOOR = 1e-6
"""Smallest std used to normalise a feature, so constant features do not divide by zero."""
PRIOR_THRESHOLD_MODES = ("absolute", "relative")
MIN_BATCH_SIZE = 2
"""A batch must hold at least one sample with m(z) = 1 and one with m(z) = 0 for the taken skill."""

Tensor = torch.Tensor


def _resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _check(condition: bool, name: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ValueError(f"CriticConfig.{name} {requirement}, got {value!r}")


@dataclass
class CriticConfig:
    """Every hyper-parameter of the masked critic and its skill prior."""

    hidden: int = 256
    """Width of every hidden layer of the Q networks and of the prior network."""
    layers: int = 3
    """Number of hidden layers of each network (>= 1)."""
    layer_norm: bool = True
    """LayerNorm after every hidden linear layer; keeps bootstrapped Q targets from drifting."""
    gamma: float = 0.99
    """Per-environment-step discount in (0, 1]; one skill of H steps is discounted by gamma ** H."""
    lr: float = 3e-4
    """Adam learning rate of the Q networks."""
    weight_decay: float = 0.0
    """AdamW weight decay of the Q networks."""
    grad_clip_norm: float = 10.0
    """Max global gradient norm of a Q update (> 0)."""
    tau: float = 0.005
    """Soft target update rate in (0, 1]: target <- (1 - tau) target + tau online, after every step."""
    batch_size: int = 256
    """Transitions per TD step (>= 2: a batch must show both m(z) = 1 and m(z) = 0)."""
    steps: int = 20_000
    """Number of TD steps."""
    prior_steps: int = 2_000
    """Cross-entropy steps of the skill prior, run before the TD steps (the Bellman filter reads it)."""
    prior_lr: float = 1e-3
    """Adam learning rate of the skill prior."""
    keep_prob: float = 0.5
    """Probability that a token is unmasked in an i.i.d. Bernoulli training mask, in (0, 1)."""
    structured_mask_fraction: float = 0.5
    """Share of samples whose mask is a union of data segments' tokens instead of Bernoulli, in [0, 1]."""
    anchored_segment_fraction: float = 0.5
    """Share of structured masks whose first segment contains the sample's own window, in [0, 1]."""
    segment_goal_fraction: float = 0.5
    """Share of anchored structured masks whose goal is the end of the anchored segment (a demo-like sample: the
    mask holds a path from s to g); the others keep hindsight goals, in [0, 1]."""
    return_bound: bool = True
    """Target = max(masked Bellman target, discounted data return) where the data's continuation reaches the goal
    through unmasked skills only (see the module doc string)."""
    return_bound_skills: int = 64
    """Consecutive skills of the data's continuation the bound looks through (>= 1); longer routes get no bound."""
    segments_per_mask: int = 2
    """A structured mask unions 1..segments_per_mask segments (uniform)."""
    segment_min_windows: int = 2
    """Shortest segment, in consecutive windows (>= 1)."""
    segment_max_windows: int = 16
    """Longest segment, in consecutive windows (>= segment_min_windows); clipped to the episode."""
    prior_threshold: float = DEFAULT_PRIOR_THRESHOLD
    """Bellman max only over z' with p(z' | s') >= this (absolute) or >= this * max p (relative), in [0, 1)."""
    prior_threshold_mode: str = "absolute"
    """'absolute' or 'relative' (see prior_threshold); relative adapts to large codebooks where 1/L < threshold."""
    target_temperature: float = 0.01
    """Mellowmax temperature of the Bellman max over feasible skills (>= 0; 0 = hard max). Q lies in [0, 1]."""
    n_critics: int = 2
    """Number of Q networks (>= 1); targets use the min over their target copies (clipped double Q)."""
    her_fraction: float = 0.8
    """Share of samples whose goal is a future achieved position of the same episode; the rest draw an
    achieved position of a random episode, in [0, 1]."""
    goal_radius: float = DEFAULT_GOAL_RADIUS
    """A window reaches g when one of its positions is within this distance (> 0)."""
    goal_conditioned: bool = True
    """False: fixed-goal mode, Q ignores g and every reward is measured against ``fixed_goal``."""
    fixed_goal: tuple[float, ...] | None = None
    """The goal position of fixed-goal mode (required there, ignored when goal_conditioned)."""
    log_every: int = 100
    """Steps between reads of the TD loss (each read syncs with the device)."""
    seed: int = 0
    """Seeds network initialisation and every sampled batch, mask and goal."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""

    def __post_init__(self) -> None:
        _check(self.hidden >= 1, "hidden", self.hidden, "must be >= 1")
        _check(self.layers >= 1, "layers", self.layers, "must be >= 1")
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.grad_clip_norm > 0, "grad_clip_norm", self.grad_clip_norm, "must be > 0")
        _check(0 < self.tau <= 1, "tau", self.tau, "must be in (0, 1]")
        _check(self.batch_size >= MIN_BATCH_SIZE, "batch_size", self.batch_size, f"must be >= {MIN_BATCH_SIZE}")
        _check(self.steps >= 0, "steps", self.steps, "must be >= 0")
        _check(self.prior_steps >= 0, "prior_steps", self.prior_steps, "must be >= 0")
        _check(self.prior_lr > 0, "prior_lr", self.prior_lr, "must be > 0")
        _check(0 < self.keep_prob < 1, "keep_prob", self.keep_prob, "must be in (0, 1)")
        fractions = ("structured_mask_fraction", "anchored_segment_fraction", "segment_goal_fraction", "her_fraction")
        for name in fractions:
            value = getattr(self, name)
            _check(0 <= value <= 1, name, value, "must be in [0, 1]")
        _check(self.return_bound_skills >= 1, "return_bound_skills", self.return_bound_skills, "must be >= 1")
        _check(self.segments_per_mask >= 1, "segments_per_mask", self.segments_per_mask, "must be >= 1")
        _check(self.segment_min_windows >= 1, "segment_min_windows", self.segment_min_windows, "must be >= 1")
        _check(
            self.segment_max_windows >= self.segment_min_windows,
            "segment_max_windows",
            self.segment_max_windows,
            f"must be >= segment_min_windows ({self.segment_min_windows})",
        )
        _check(0 <= self.prior_threshold < 1, "prior_threshold", self.prior_threshold, "must be in [0, 1)")
        _check(
            self.prior_threshold_mode in PRIOR_THRESHOLD_MODES,
            "prior_threshold_mode",
            self.prior_threshold_mode,
            f"must be one of {PRIOR_THRESHOLD_MODES}",
        )
        _check(self.target_temperature >= 0, "target_temperature", self.target_temperature, "must be >= 0")
        _check(self.n_critics >= 1, "n_critics", self.n_critics, "must be >= 1")
        _check(self.goal_radius > 0, "goal_radius", self.goal_radius, "must be > 0")
        if self.fixed_goal is not None:
            self.fixed_goal = tuple(float(v) for v in self.fixed_goal)
            _check(
                len(self.fixed_goal) >= 1 and all(math.isfinite(v) for v in self.fixed_goal),
                "fixed_goal",
                self.fixed_goal,
                "must be a non-empty sequence of finite numbers",
            )
        _check(
            self.goal_conditioned or self.fixed_goal is not None,
            "fixed_goal",
            self.fixed_goal,
            "must be set when goal_conditioned is False (fixed-goal mode measures rewards against it)",
        )
        _check(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        try:
            _resolve_device(self.device)
        except RuntimeError as error:
            raise ValueError(f"CriticConfig.device must name a torch device or 'auto', got {self.device!r}") from error


# --------------------------------------------------------------------------------------------------------------
# Data


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
        moved = {
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


# --------------------------------------------------------------------------------------------------------------
# Pure pieces of the masked Bellman target


def goal_reached(positions: Tensor, goals: Tensor, radius: float) -> Tensor:
    """(B, H, P) window positions, (B, P) goals -> (B,) bool: some position is within ``radius`` of g."""
    return (torch.linalg.vector_norm(positions - goals[:, None], dim=-1) <= radius).any(dim=1)


def prior_support(probs: Tensor, threshold: float, mode: str = "absolute") -> Tensor:
    """(B, L) prior probabilities -> (B, L) bool: skills the data plausibly takes at that state.

    'absolute': p >= threshold. 'relative': p >= threshold * max_z p, which keeps the most likely skill even
    when a large codebook spreads every probability below an absolute threshold.
    """
    if mode == "absolute":
        return probs >= threshold
    if mode == "relative":
        return probs >= threshold * probs.amax(dim=-1, keepdim=True)
    raise ValueError(f"prior threshold mode must be one of {PRIOR_THRESHOLD_MODES}, got {mode!r}")


def masked_soft_max(values: Tensor, allowed: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Mellowmax of ``values`` over the ``allowed`` entries of each row.

    Args:
        values: (B, L) Q values.
        allowed: (B, L) bool, the entries the max may pick.
        temperature: mellowmax temperature; 0 gives the hard max.

    Returns:
        ((B,) smoothed max, meaningless where a row allows nothing; (B,) bool, whether a row allows anything).
    """
    any_allowed = allowed.any(dim=-1)
    if temperature == 0:
        best = values.masked_fill(~allowed, -math.inf).amax(dim=-1)
    else:
        count = allowed.sum(dim=-1).clamp_min(1).to(values.dtype)
        scaled = (values / temperature).masked_fill(~allowed, -math.inf)
        best = temperature * (torch.logsumexp(scaled, dim=-1) - torch.log(count))
    return torch.where(any_allowed, best, torch.zeros_like(best)), any_allowed


def masked_bellman_target(
    reward: Tensor,
    done: Tensor,
    taken_unmasked: Tensor,
    next_q: Tensor,
    next_allowed: Tensor,
    discount: float,
    temperature: float = 0.0,
    termination_reward: float = TERMINATION_REWARD,
) -> Tensor:
    """The masked skill-level Bellman target.

    y = r_term                                                  if m(z) = 0 (the skill leads to the sink)
    y = R + (1 - done) * discount * softmax_{z' allowed} Q'(s', z')   otherwise,
    where the bootstrap itself is r_term when no z' is allowed.

    Args:
        reward: (B,) skill-level reward R.
        done: (B,) bool, the window reached the goal.
        taken_unmasked: (B,) bool, m(z) for the taken skill.
        next_q: (B, L) target Q(s', ., m, g) (already the min over target critics).
        next_allowed: (B, L) bool, m(z') and the prior filter at s'.
        discount: skill-level discount gamma ** H.
        temperature: mellowmax temperature (0 = hard max).
        termination_reward: r_term.

    Returns:
        (B,) targets.
    """
    bootstrap, any_allowed = masked_soft_max(next_q, next_allowed, temperature)
    bootstrap = torch.where(any_allowed, bootstrap, torch.full_like(bootstrap, termination_reward))
    continuing = reward + (~done).to(reward.dtype) * discount * bootstrap
    return torch.where(taken_unmasked, continuing, torch.full_like(continuing, termination_reward))


def continuation_return_bound(
    positions: Tensor,
    valid: Tensor,
    goals: Tensor,
    tokens: Tensor,
    masks: Tensor,
    radius: float,
    discount: float,
    goal_reward: float = GOAL_REWARD,
) -> tuple[Tensor, Tensor]:
    """Discounted return of the data's own continuation, where it is a feasible policy under the mask.

    The continuation runs J consecutive H-step skills from the sample's state: skill j covers positions
    j*H .. j*H + H - 1 of ``positions`` and has token ``tokens[:, j]``. It earns ``goal_reward`` in the first skill
    j* that comes within ``radius`` of g, so its return is discount ** j * goal_reward. It is a lower bound on the
    masked optimum only if skills 0 .. j* are all unmasked.

    Args:
        positions: (B, J * H, P) positions the continuation reaches, in time order.
        valid: (B, J * H) bool, False past the end of the episode.
        goals: (B, P).
        tokens: (B, J) long tokens of the continuation's skills, PAD_TOKEN where there is none.
        masks: (B, L) bool.
        radius: goal radius.
        discount: skill-level discount gamma ** H.
        goal_reward: reward of the skill that reaches g.

    Returns:
        ((B,) bound, meaningless where not defined; (B,) bool, whether the bound is defined).
    """
    batch, skills = tokens.shape
    near = (torch.linalg.vector_norm(positions - goals[:, None], dim=-1) <= radius) & valid  # (B, J * H)
    reached = near.reshape(batch, skills, -1).any(dim=-1)  # (B, J)
    first = reached.to(torch.int8).argmax(dim=1)  # (B,) first skill that reaches g (0 where none does)
    unmasked = masks.gather(1, tokens.clamp_min(0)) & (tokens >= 0)  # (B, J)
    feasible_prefix = unmasked.to(torch.int8).cumprod(dim=1).bool()  # skills 0 .. j all unmasked
    defined = reached.any(dim=1) & feasible_prefix.gather(1, first[:, None]).squeeze(1)
    bound = goal_reward * discount ** first.to(goals.dtype)
    return bound, defined


# --------------------------------------------------------------------------------------------------------------
# Mask and goal sampling (all on device, no host syncs)


def _uniform_int(low: Tensor, high: Tensor, generator: torch.Generator) -> Tensor:
    """(B,) long uniform integers in [low, high] (inclusive), elementwise."""
    u = torch.rand(low.shape, generator=generator, device=low.device)
    return torch.minimum(low + (u * (high - low + 1).to(u.dtype)).long(), high)


def _segment_tokens_mask(
    episode_tokens: Tensor,
    episode: Tensor,
    start: Tensor,
    length: Tensor,
    max_length: int,
    num_skills: int,
) -> Tensor:
    """(B, L) bool: the tokens of windows start .. start + length - 1 of each row's episode."""
    offsets = torch.arange(max_length, device=episode.device)  # (M,)
    index = (start[:, None] + offsets[None]).clamp_max(episode_tokens.shape[1] - 1)  # (B, M)
    tokens = episode_tokens[episode[:, None], index]  # (B, M)
    valid = (offsets[None] < length[:, None]) & (tokens >= 0)
    counts = torch.zeros(episode.shape[0], num_skills, device=episode.device)
    counts.scatter_add_(1, tokens.clamp_min(0), valid.to(counts.dtype))
    return counts > 0


def sample_segment_masks(
    episode_tokens: Tensor,
    episode_windows: Tensor,
    n: int,
    num_skills: int,
    config: CriticConfig,
    generator: torch.Generator,
    anchor_episode: Tensor | None = None,
    anchor_window: Tensor | None = None,
    return_first: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor, Tensor]:
    """Structured masks: unions of the tokens of 1..segments_per_mask contiguous data segments.

    Args:
        episode_tokens: (E, W_max) long per-episode window tokens, PAD_TOKEN-padded.
        episode_windows: (E,) long windows per episode (episodes without windows are never drawn).
        n: number of masks B.
        num_skills: L.
        config: segment lengths and counts.
        generator: device RNG.
        anchor_episode, anchor_window: (B,) long; when given, the first segment of row b contains window
            ``anchor_window[b]`` of episode ``anchor_episode[b]`` (indices into the same token table).
        return_first: also return the first segment of each row as (episode, start window, length).

    Returns:
        (B, L) bool masks, or (masks, (B,) episode, (B,) start, (B,) length) with ``return_first``.
    """
    device = episode_tokens.device
    lo = torch.full((n,), config.segment_min_windows, device=device, dtype=torch.long)
    hi = torch.full((n,), config.segment_max_windows, device=device, dtype=torch.long)
    count = _uniform_int(torch.ones_like(lo), torch.full_like(lo, config.segments_per_mask), generator)
    mask = torch.zeros(n, num_skills, dtype=torch.bool, device=device)
    for k in range(config.segments_per_mask):
        if k == 0 and anchor_episode is not None and anchor_window is not None:
            episode = anchor_episode
            windows = episode_windows[episode]
            length = torch.minimum(_uniform_int(lo, hi, generator), windows)
            first = (anchor_window - length + 1).clamp_min(0)
            last = torch.minimum(anchor_window, windows - length)
            start = _uniform_int(first, last, generator)
        else:
            # episodes in proportion to their windows, so every data window is equally likely to be covered
            episode = torch.multinomial(episode_windows.float(), n, replacement=True, generator=generator)
            windows = episode_windows[episode]
            length = torch.minimum(_uniform_int(lo, hi, generator), windows)
            start = _uniform_int(torch.zeros_like(windows), windows - length, generator)
        segment = _segment_tokens_mask(episode_tokens, episode, start, length, config.segment_max_windows, num_skills)
        mask |= segment & (k < count)[:, None]
        if k == 0:
            first_segment = (episode, start, length)
    return (mask, *first_segment) if return_first else mask


def _pad_token_sequences(sequences: Sequence[Tensor | np.ndarray]) -> tuple[Tensor, Tensor]:
    """Per-episode (W_e,) token sequences -> ((E, W_max) PAD_TOKEN-padded table, (E,) lengths)."""
    seqs = [torch.as_tensor(np.asarray(s), dtype=torch.long).reshape(-1) for s in sequences if len(s) > 0]
    if not seqs:
        raise ValueError("segment_tokens holds no non-empty token sequence")
    table = torch.full((len(seqs), max(s.shape[0] for s in seqs)), PAD_TOKEN, dtype=torch.long)
    for i, s in enumerate(seqs):
        table[i, : s.shape[0]] = s
    return table, torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)


# --------------------------------------------------------------------------------------------------------------
# Networks


def _mlp(in_dim: int, hidden: int, layers: int, out_dim: int, layer_norm: bool) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules.append(nn.Linear(width, hidden))
        if layer_norm:
            modules.append(nn.LayerNorm(hidden))
        modules.append(nn.Mish())
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class MaskedCritic(nn.Module):
    """Q(s, z, m, g) for all L skills in one forward, an ensemble of ``n_critics`` nets, plus the prior p(z | s).

    Input of each Q net: concat(normalised s (S), normalised g (G, goal-conditioned mode only), m as a float
    L-vector); output (L,) Q values. Normalisation statistics are buffers, saved with the weights.
    """

    def __init__(self, config: CriticConfig, state_dim: int, goal_dim: int, num_skills: int, horizon: int) -> None:
        super().__init__()
        if min(state_dim, goal_dim, num_skills, horizon) < 1:
            raise ValueError(
                f"state_dim, goal_dim, num_skills and horizon must be >= 1, got {state_dim}, {goal_dim}, "
                f"{num_skills}, {horizon}"
            )
        if config.fixed_goal is not None and not config.goal_conditioned and len(config.fixed_goal) != goal_dim:
            raise ValueError(f"CriticConfig.fixed_goal has {len(config.fixed_goal)} numbers but goals have {goal_dim}")
        self.config = config
        self.state_dim, self.goal_dim, self.num_skills, self.horizon = state_dim, goal_dim, num_skills, horizon
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("goal_mean", torch.zeros(goal_dim))
        self.register_buffer("goal_std", torch.ones(goal_dim))
        goal_inputs = goal_dim if config.goal_conditioned else 0
        in_dim = state_dim + goal_inputs + num_skills
        self.q_nets = nn.ModuleList(
            _mlp(in_dim, config.hidden, config.layers, num_skills, config.layer_norm) for _ in range(config.n_critics)
        )
        self.prior_net = _mlp(state_dim, config.hidden, config.layers, num_skills, config.layer_norm)

    @property
    def discount(self) -> float:
        """Skill-level discount gamma ** H."""
        return self.config.gamma**self.horizon

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    def set_normalisation(self, state_mean: Tensor, state_std: Tensor, goal_mean: Tensor, goal_std: Tensor) -> None:
        """Store (S,) and (G,) feature statistics; stds are floored at STD_FLOOR."""
        self.state_mean.copy_(state_mean)
        self.state_std.copy_(state_std.clamp_min(STD_FLOOR))
        self.goal_mean.copy_(goal_mean)
        self.goal_std.copy_(goal_std.clamp_min(STD_FLOOR))

    def fixed_goal_tensor(self, batch: int) -> Tensor:
        """(B, G) the fixed goal of fixed-goal mode, repeated."""
        if self.config.fixed_goal is None:
            raise ValueError("CriticConfig.fixed_goal is None: this critic has no fixed goal")
        goal = torch.tensor(self.config.fixed_goal, device=self.device, dtype=self.state_mean.dtype)
        return goal.expand(batch, -1)

    def _features(self, s: Tensor, m: Tensor, g: Tensor | None) -> Tensor:
        if m.shape[-1] != self.num_skills:
            raise ValueError(f"masks have {m.shape[-1]} entries, the critic was built for L = {self.num_skills}")
        parts = [(s - self.state_mean) / self.state_std]
        if self.config.goal_conditioned:
            if g is None:
                raise ValueError("this critic is goal-conditioned: q_values needs goals g (B, G)")
            parts.append((g - self.goal_mean) / self.goal_std)
        parts.append(m.to(s.dtype))
        return torch.cat(parts, dim=-1)

    def q_ensemble(self, s: Tensor, m: Tensor, g: Tensor | None, nets: nn.ModuleList | None = None) -> Tensor:
        """(B, S), (B, L) bool, (B, G) or None -> (n_critics, B, L) Q values of every net in ``nets``."""
        features = self._features(s, m, g)
        return torch.stack([net(features) for net in (nets if nets is not None else self.q_nets)])

    def q_values(self, s: Tensor, m: Tensor, g: Tensor | None = None) -> Tensor:
        """(B, S) states, (B, L) bool masks, (B, G) goals (ignored in fixed-goal mode) -> (B, L) min over critics."""
        return self.q_ensemble(s, m, g).amin(dim=0)

    def state_values(self, s: Tensor, m: Tensor, g: Tensor | None = None) -> Tensor:
        """(B, S), (B, L) bool, (B, G) -> (B,) V(s, m, g) = max Q over the skills that are unmasked and in the data's
        support at s (the set the Bellman target bootstraps over, hard max); r_term where that set is empty."""
        support = prior_support(self.skill_prior(s), self.config.prior_threshold, self.config.prior_threshold_mode)
        allowed = m.to(torch.bool) & support
        best = self.q_values(s, m, g).masked_fill(~allowed, -math.inf).amax(dim=-1)
        return torch.where(allowed.any(dim=-1), best, torch.full_like(best, TERMINATION_REWARD))

    def prior_logits(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) logits of the skill prior p(z | s)."""
        return self.prior_net((s - self.state_mean) / self.state_std)

    def skill_prior(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) probabilities p(z | s)."""
        return self.prior_logits(s).softmax(dim=-1)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write weights (safetensors) and config JSON atomically to ``directory``."""
        extra = {
            "state_dim": self.state_dim,
            "goal_dim": self.goal_dim,
            "num_skills": self.num_skills,
            "horizon": self.horizon,
        }
        return save_module(self, self.config, directory, kind=CHECKPOINT_KIND, extra=extra)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: str | None = None) -> MaskedCritic:
        """Load a checkpoint written by ``save_pretrained``; refuses checkpoints of another kind.

        ``device`` overrides the saved config's device (e.g. load a GPU-trained critic on the CPU).
        """
        state, config_dict, extra = load_state(directory, CHECKPOINT_KIND)
        if device is not None:
            config_dict["device"] = device
        config = config_from_dict(CriticConfig, config_dict, directory)
        dims = (int(extra[key]) for key in ("state_dim", "goal_dim", "num_skills", "horizon"))
        critic = cls(config, *dims)
        load_module_state(critic, state, directory)
        return critic.to(_resolve_device(config.device)).eval()


# --------------------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class CriticReport:
    """What one ``train_critic`` run measured."""

    td_losses: tuple[float, ...]
    """Mean TD loss over critics, read every ``log_every`` steps."""
    final_td_loss: float
    """Mean TD loss over the last logging interval (nan when steps = 0)."""
    prior_loss: float
    """Cross-entropy of the skill prior on the last prior batch (nan when prior_steps = 0)."""
    prior_accuracy: float
    """Top-1 accuracy of the prior on the whole data (after training)."""
    mean_q: float
    """Mean Q of the taken skills over the last logging interval."""
    masked_taken_fraction: float
    """Share of training samples whose taken skill was masked (sink targets)."""
    empty_bootstrap_fraction: float
    """Share of unmasked, not-done samples with no feasible in-prior next skill (bootstrap = r_term)."""
    bound_lifted_fraction: float
    """Share of training samples whose target the data-return lower bound raised above the Bellman target."""
    steps: int
    """TD steps run."""
    seconds: float
    """Wall time of the whole run (prior and TD)."""


class _Sampler:
    """Draws training batches (indices, goals, rewards, masks) on the device with one seeded generator."""

    def __init__(
        self,
        transitions: SkillTransitions,
        config: CriticConfig,
        segment_table: Tensor,
        segment_lengths: Tensor,
        generator: torch.Generator,
    ) -> None:
        self.data, self.config, self.generator = transitions, config, generator
        self.segment_table, self.segment_lengths = segment_table, segment_lengths
        self.device = transitions.s.device
        self.discount = config.gamma**transitions.horizon
        if not config.goal_conditioned:
            assert config.fixed_goal is not None  # checked in CriticConfig
            self.fixed_goal = torch.tensor(config.fixed_goal, device=self.device)

    def indices(self, batch: int) -> Tensor:
        return torch.randint(len(self.data), (batch,), generator=self.generator, device=self.device)

    def goals(self, idx: Tensor) -> Tensor:
        """(B,) transition indices -> (B, P) goals: hindsight future positions or random achieved positions."""
        if not self.config.goal_conditioned:
            return self.fixed_goal.expand(idx.shape[0], -1)
        data, gen = self.data, self.generator
        episode, start = data.episode[idx], data.start[idx]
        last = data.episode_length[episode] - 1
        future = _uniform_int(start + 1, last, gen)
        other = torch.randint(data.achieved.shape[0], idx.shape, generator=gen, device=self.device)
        other_step = _uniform_int(torch.zeros_like(other), data.episode_length[other] - 1, gen)
        use_her = torch.rand(idx.shape, generator=gen, device=self.device) < self.config.her_fraction
        return data.achieved[torch.where(use_her, episode, other), torch.where(use_her, future, other_step)]

    def masks_and_goals(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) transition indices -> ((B, L) bool training masks, (B, P) goals).

        Masks are Bernoulli, random segments or anchored segments; goals are hindsight goals, except for the
        share ``segment_goal_fraction`` of anchored rows, whose goal is where their segment ends (demo-like).
        """
        data, cfg, gen, n = self.data, self.config, self.generator, idx.shape[0]
        goals = self.goals(idx)
        bernoulli = torch.rand(n, data.num_skills, generator=gen, device=self.device) < cfg.keep_prob
        free = sample_segment_masks(self.segment_table, self.segment_lengths, n, data.num_skills, cfg, gen)
        anchored, episode, start, length = sample_segment_masks(
            data.episode_tokens,
            data.episode_windows,
            n,
            data.num_skills,
            cfg,
            gen,
            anchor_episode=data.episode[idx],
            anchor_window=data.window[idx],
            return_first=True,
        )
        kind = torch.rand(n, generator=gen, device=self.device)
        use_anchor = torch.rand(n, generator=gen, device=self.device) < cfg.anchored_segment_fraction
        structured = torch.where(use_anchor[:, None], anchored, free)
        use_structured = kind < cfg.structured_mask_fraction
        masks = torch.where(use_structured[:, None], structured, bernoulli)
        if cfg.goal_conditioned:
            # The last window of the anchored segment starts at step (start + length - 1) * stride; its reward
            # positions end H steps later: the goal sits there, so the segment reaches it.
            end_step = (start + length - 1) * data.stride + data.horizon
            segment_goal = data.achieved[episode, end_step]
            demo_like = use_structured & use_anchor
            demo_like &= torch.rand(n, generator=gen, device=self.device) < cfg.segment_goal_fraction
            goals = torch.where(demo_like[:, None], segment_goal, goals)
        return _ensure_both_taken_cases(masks, data.z[idx]), goals

    def return_bound(self, idx: Tensor, goals: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) indices, (B, P) goals, (B, L) masks -> ((B,) data-return bound, (B,) bool where it is defined)."""
        data, skills = self.data, self.config.return_bound_skills
        episode, start, window = data.episode[idx], data.start[idx], data.window[idx]
        steps = start[:, None] + 1 + torch.arange(skills * data.horizon, device=self.device)  # (B, J * H)
        last = data.episode_length[episode] - 1
        positions = data.achieved[episode[:, None], torch.minimum(steps, last[:, None])]
        windows = window[:, None] + torch.arange(skills, device=self.device) * (data.horizon // data.stride)
        in_episode = windows < data.episode_windows[episode][:, None]
        tokens = data.episode_tokens[episode[:, None], windows.clamp_max(data.episode_tokens.shape[1] - 1)]
        tokens = torch.where(in_episode, tokens, torch.full_like(tokens, PAD_TOKEN))
        return continuation_return_bound(
            positions, steps <= last[:, None], goals, tokens, masks, self.config.goal_radius, self.discount
        )


def _ensure_both_taken_cases(masks: Tensor, z: Tensor) -> Tensor:
    """Flip m(z) of row 0 if every row agrees on it, so the batch teaches both the sink and the bootstrap."""
    taken = masks.gather(1, z[:, None]).squeeze(1)  # (B,)
    flipped = torch.where(taken.all(), torch.zeros_like(taken[0]), torch.where((~taken).all(), ~taken[0], taken[0]))
    masks = masks.clone()
    masks.index_put_((torch.zeros_like(z[:1]), z[:1]), flipped[None])
    return masks


def _train_prior(
    critic: MaskedCritic, data: SkillTransitions, config: CriticConfig, gen: torch.Generator, progress: bool
) -> tuple[float, float]:
    """Fit p(z | s) by cross-entropy on the data's (s, z); returns (last batch loss, accuracy on all data)."""
    optimiser = torch.optim.Adam(critic.prior_net.parameters(), lr=config.prior_lr, foreach=True)
    loss = torch.tensor(math.nan)
    bar = tqdm(range(config.prior_steps), desc="skill prior", disable=not progress, leave=False)
    for step in bar:
        idx = torch.randint(len(data), (config.batch_size,), generator=gen, device=data.s.device)
        loss = F.cross_entropy(critic.prior_logits(data.s[idx]), data.z[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if (step + 1) % config.log_every == 0:
            bar.set_postfix(ce=f"{loss.item():.4f}")
    with torch.no_grad():
        correct = sum(
            int((critic.prior_logits(data.s[i : i + 4096]).argmax(-1) == data.z[i : i + 4096]).sum())
            for i in range(0, len(data), 4096)
        )
    return float(loss.detach()), correct / len(data)


class _Totals:
    """Report counters kept on the device (no sync per step) and checkpointed with the loop."""

    def __init__(self, device: torch.device) -> None:
        self.values = {k: torch.zeros((), device=device) for k in ("masked", "live", "empty", "lifted")}

    def add(self, **counts: Tensor) -> None:
        for key, value in counts.items():
            self.values[key] += value

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.values)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for key, value in state.items():
            self.values[key].copy_(value)


def train_critic(
    transitions: SkillTransitions,
    config: CriticConfig,
    segment_tokens: Sequence[Tensor | np.ndarray] | None = None,
    progress: bool = True,
    settings: LoopSettings | None = None,
) -> tuple[MaskedCritic, CriticReport]:
    """Train the masked-Bellman critic and its skill prior offline.

    Args:
        transitions: from ``build_skill_transitions``.
        config: hyper-parameters.
        segment_tokens: per-episode token sequences in time order from which structured (non-anchored) masks are
            cut, e.g. tokens of a denser windowing or of extra data; default the transitions' own episodes.
            Anchored segments always come from the transitions' episodes.
        progress: show tqdm bars (the TD one shows the TD loss).
        settings: checkpoint folder and interval of the resumable TD loop (default: none).

    Returns:
        (critic in eval mode on the config's device, report).
    """
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    data = transitions.to(device)
    if not config.goal_conditioned and config.fixed_goal is not None and len(config.fixed_goal) != data.pos_dim:
        raise ValueError(
            f"CriticConfig.fixed_goal has {len(config.fixed_goal)} numbers but positions have {data.pos_dim}"
        )
    if config.return_bound and data.horizon % data.stride != 0:
        raise ValueError(
            f"CriticConfig.return_bound needs windows whose stride ({data.stride}) divides the horizon "
            f"({data.horizon}): the bound follows the data's back-to-back skills; set return_bound: false"
        )
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        critic = MaskedCritic(config, data.state_dim, data.pos_dim, data.num_skills, data.horizon)
    critic = critic.to(device)
    valid_steps = torch.cat(
        [data.achieved[e, : int(n)] for e, n in enumerate(data.episode_length.tolist())]
    )  # (sum T_e, P)
    critic.set_normalisation(data.s.mean(0), data.s.std(0), valid_steps.mean(0), valid_steps.std(0))
    gen = torch.Generator(device=device).manual_seed(config.seed)

    prior_loss, prior_accuracy = _train_prior(critic, data, config, gen, progress)
    critic.prior_net.requires_grad_(False)

    if segment_tokens is None:
        segment_table, segment_lengths = data.episode_tokens, data.episode_windows
    else:
        segment_table, segment_lengths = (t.to(device) for t in _pad_token_sequences(segment_tokens))
        if int(segment_table.max()) >= data.num_skills:
            raise ValueError(f"segment_tokens reach {int(segment_table.max())} but num_skills = {data.num_skills}")
    sampler = _Sampler(data, config, segment_table, segment_lengths, gen)

    target_nets = copy.deepcopy(critic.q_nets).requires_grad_(False)
    # foreach: the nets are small, so per-parameter optimiser and target-update kernels would dominate a step
    optimiser = torch.optim.AdamW(
        critic.q_nets.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    critic, optimiser = accelerator.prepare(critic, optimiser)
    model = accelerator.unwrap_model(critic)
    online = list(model.q_nets.parameters())
    target = list(target_nets.parameters())
    soft_update = get_ema_multi_avg_fn(decay=1.0 - config.tau)
    discount = model.discount
    totals = _Totals(device)
    critic.train()

    def step(_: int) -> dict[str, Tensor]:
        idx = sampler.indices(config.batch_size)
        z = data.z[idx]
        masks, goals = sampler.masks_and_goals(idx)
        done = goal_reached(data.positions[idx], goals, config.goal_radius)
        reward = done.to(torch.float32) * GOAL_REWARD
        taken_unmasked = masks.gather(1, z[:, None]).squeeze(1)
        with torch.no_grad():
            s_next = data.s_next[idx]
            next_q = model.q_ensemble(s_next, masks, goals, nets=target_nets).amin(dim=0)
            in_prior = prior_support(model.skill_prior(s_next), config.prior_threshold, config.prior_threshold_mode)
            allowed = masks & in_prior
            y = masked_bellman_target(
                reward, done, taken_unmasked, next_q, allowed, discount, config.target_temperature
            )
            if config.return_bound:
                bound, bounded = sampler.return_bound(idx, goals, masks)
                lifted = bounded & (bound > y)
                y = torch.where(lifted, bound, y)
            else:
                lifted = torch.zeros_like(done)
        q_taken = model.q_ensemble(data.s[idx], masks, goals).gather(
            2, z[None, :, None].expand(config.n_critics, -1, 1)
        ).squeeze(2)  # (n_critics, B)
        loss = F.mse_loss(q_taken, y[None].expand_as(q_taken))
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        nn.utils.clip_grad_norm_(online, config.grad_clip_norm, foreach=True)
        optimiser.step()
        with torch.no_grad():
            soft_update(target, online, None)
            live = taken_unmasked & ~done
            totals.add(
                masked=(~taken_unmasked).sum(),
                live=live.sum(),
                empty=(live & ~allowed.any(dim=1)).sum(),
                lifted=lifted.sum(),
            )
        return {"td": loss.detach(), "q": q_taken.detach().mean()}

    history = run_loop(
        "masked critic", accelerator, config.steps, step,
        {"target_nets": target_nets, "rng": GeneratorState(gen), "totals": totals},
        settings or LoopSettings(progress=progress), log_every=config.log_every,
    )  # fmt: skip
    td_losses = [h["td"] for h in history]
    final_td = td_losses[-1] if td_losses else math.nan
    mean_q = history[-1]["q"] if history else math.nan
    critic = model
    critic.eval()
    samples = max(1, config.steps * config.batch_size)
    report = CriticReport(
        td_losses=tuple(td_losses),
        final_td_loss=final_td,
        prior_loss=prior_loss,
        prior_accuracy=prior_accuracy,
        mean_q=mean_q,
        masked_taken_fraction=float(totals.values["masked"]) / samples,
        empty_bootstrap_fraction=float(totals.values["empty"]) / max(1.0, float(totals.values["live"])),
        bound_lifted_fraction=float(totals.values["lifted"]) / samples,
        steps=config.steps,
        seconds=time.perf_counter() - started,
    )
    return critic, report
