"""Skill masks: which of the L skill tokens an agent may use. Built from one observation-only demo at
deployment (``infer_mask``), and sampled at random or from data segments (on the device) while training the critic.

A ``SkillMask`` is a bool tensor of shape (L,): ``m[z]`` is True when token z is permitted. Batches of masks
are (B, L) bool tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import torch

from mstt.skills.tokenizer import SkillTokenizer
from mstt.skills.windows import (
    DEFAULT_OFFSET_SIGMA,
    DEFAULT_TIME_WARP,
    augment_path,
    position_windows,
    resample_path,
)

SkillMask: TypeAlias = torch.Tensor
"""(L,) bool tensor; True marks a permitted skill token."""
PAD_TOKEN = -1
"""Fills a per-episode token table past an episode's last window."""

# A demo with fewer of its windows inside the tokenizer's training distribution than this share is probably
# from another world, scale or coordinate frame; its mask is then unreliable and the caller should know.
IN_DISTRIBUTION_FLAG_SHARE = 0.5


@dataclass(frozen=True)
class MaskInferenceConfig:
    """How a demo becomes a skill mask."""

    stride: int = 1
    """Steps between the starts of consecutive demo windows; 1 sees every window the demo contains."""
    augment: bool = True
    """Also encode perturbed copies of the demo (time warp, offset): one clean demo misses ~5 % of its
    route's windows; augmentation lifted coverage to ~0.99 on PointMaze with <= 0.6 % leakage."""
    n_augment: int = 16
    """Perturbed copies encoded when augment is on."""
    time_warp: tuple[float, float] = DEFAULT_TIME_WARP
    """(low, high) range of speed factors of the copies (< 1 is slower than the data's typical step)."""
    offset_sigma: float = DEFAULT_OFFSET_SIGMA
    """Std (world units) of each copy's constant position offset. 0.3 leaked 2-20 % on PointMaze."""
    seed: int = 0
    """Seed of the augmentation."""
    use_timestamps: bool = True
    """Resample a demo that carries timestamps at its own pace (positions every ``dt`` of its time) rather than by
    arc length at the data's step. False reads the route's geometry only: a demonstrator who hurries and dawdles then
    gives the windows of one who walks at the data's pace (a drawn or VLM-made route carries no timestamps and is
    always read by arc length)."""

    def __post_init__(self) -> None:
        if not isinstance(self.use_timestamps, bool):
            raise ValueError(f"MaskInferenceConfig.use_timestamps must be true or false, got {self.use_timestamps!r}")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"MaskInferenceConfig.stride must be a positive integer, got {self.stride!r}")
        if isinstance(self.n_augment, bool) or not isinstance(self.n_augment, int) or self.n_augment < 0:
            raise ValueError(f"MaskInferenceConfig.n_augment must be an integer >= 0, got {self.n_augment!r}")
        if len(self.time_warp) != 2 or not (0 < self.time_warp[0] <= self.time_warp[1] < math.inf):
            raise ValueError(
                f"MaskInferenceConfig.time_warp must be (low, high) with 0 < low <= high, got {self.time_warp!r}"
            )
        if not (math.isfinite(self.offset_sigma) and self.offset_sigma >= 0):
            raise ValueError(
                f"MaskInferenceConfig.offset_sigma must be a finite number >= 0, got {self.offset_sigma!r}"
            )


@dataclass(frozen=True)
class DemoWindows:
    """What a demo says beyond its mask: each of its windows (augmented copies included) with its token, i.e. where
    each permitted skill was actually seen. The planner's ``match_radius`` keeps only candidates near one of them."""

    windows: torch.Tensor
    """(N, H, P) float32 world positions: the demo's own windows first, then those of its augmented copies."""
    tokens: torch.Tensor
    """(N,) long token of each window; their union is the demo's mask."""
    route: torch.Tensor | None = None
    """(M, P) float32 the demo's own path in its order of travel (where its windows start; the pieces of a route with
    gaps one after another): where the planner's fallback heads across a gap."""
    route_piece: torch.Tensor | None = None
    """(M,) long which piece of the route each ``route`` point belongs to (0 for a demo without gaps)."""

    def to(self, device: torch.device | str) -> DemoWindows:
        """The tensors on ``device``: move them once, not at every planning decision."""
        route = self.route.to(device) if self.route is not None else None
        piece = self.route_piece.to(device) if self.route_piece is not None else None
        return DemoWindows(self.windows.to(device), self.tokens.to(device), route, piece)


@dataclass(frozen=True)
class MaskReport:
    """What the demo contributed to its mask, and whether the tokenizer recognised it."""

    tokens_active: int
    """Tokens set in the mask."""
    windows: int
    """Windows of the (un-augmented) demo."""
    augmented_windows: int
    """Windows from the perturbed copies."""
    in_distribution_share: float
    """Share of demo windows whose reconstruction error is <= the tokenizer's training p99 (NaN when the
    tokenizer has no training statistics)."""
    flagged: bool
    """in_distribution_share < IN_DISTRIBUTION_FLAG_SHARE (or unknown): treat the mask with suspicion."""
    message: str
    """Why it was flagged, or a one-line summary."""
    demo_windows: DemoWindows
    """The windows the mask was built from, with their tokens (for the planner's demo match)."""


def token_sequence(positions: np.ndarray, tokenizer: SkillTokenizer, stride: int = 1) -> np.ndarray:
    """Tokens of one path's windows, in order: (T, P) positions -> (N,) int64 (empty when T < H)."""
    windows = position_windows(positions, tokenizer.horizon, stride)
    if windows.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return tokenizer.encode(torch.as_tensor(windows, dtype=torch.float32)).cpu().numpy()


def infer_mask(
    points: np.ndarray,
    tokenizer: SkillTokenizer,
    config: MaskInferenceConfig,
    step_length: float,
    timestamps: np.ndarray | None = None,
    dt: float | None = None,
) -> tuple[SkillMask, MaskReport]:
    """The skill mask of one observation-only demo: every token any of its windows maps to.

    The demo is resampled to the data's step (``resample_path``), optionally augmented (``augment_path``),
    cut into windows of the tokenizer's horizon with ``config.stride``, and encoded.

    Args:
        points: (K, P) demo positions in world coordinates.
        tokenizer: a trained tokenizer.
        config: stride and augmentation.
        step_length: the data's typical per-step displacement, in world units.
        timestamps: (K,) demo times, for time resampling together with ``dt`` (ignored unless
            ``config.use_timestamps``).
        dt: the data's control period.

    Returns:
        ((L,) bool mask on the tokenizer's device, report).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != tokenizer.pos_dim:
        raise ValueError(
            f"demo points must have shape (K, {tokenizer.pos_dim}) to match the tokenizer, got {points.shape}"
        )
    if not config.use_timestamps:
        timestamps, dt = None, None
    path = resample_path(points, step_length, timestamps=timestamps, dt=dt)  # (T, P)
    demo_windows = position_windows(path, tokenizer.horizon, config.stride)  # (N, H, P)
    if demo_windows.shape[0] == 0:
        covered = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if path.shape[0] > 1 else 0.0
        raise ValueError(
            f"demo too short for one skill window: it resamples to {path.shape[0]} steps (~{covered:.3g} world units) "
            f"but the tokenizer's horizon is {tokenizer.horizon} steps (~{(tokenizer.horizon - 1) * step_length:.3g} "
            "units at this step_length); give a longer demo or check step_length"
        )
    extra_windows = [np.zeros((0, tokenizer.horizon, tokenizer.pos_dim))]
    if config.augment and config.n_augment > 0:
        rng = np.random.default_rng(config.seed)
        copies = augment_path(path, rng, config.time_warp, config.offset_sigma, config.n_augment)
        extra_windows += [position_windows(copy, tokenizer.horizon, config.stride) for copy in copies]
    augmented = np.concatenate(extra_windows)
    all_windows = torch.as_tensor(np.concatenate([demo_windows, augmented]), dtype=torch.float32)

    tokens, errors = tokenizer.encode_with_error(all_windows)  # (N + N_aug,) each
    mask = torch.zeros(tokenizer.codebook_size, dtype=torch.bool, device=tokens.device)
    mask[tokens] = True

    p99 = tokenizer.recon_error_p99
    n_demo = demo_windows.shape[0]
    if math.isnan(p99):
        share = float("nan")
        flagged = True
        message = "tokenizer has no training reconstruction statistics; cannot tell whether the demo is in distribution"
    else:
        share = float((errors[:n_demo] <= p99).float().mean())
        flagged = share < IN_DISTRIBUTION_FLAG_SHARE
        message = (
            f"only {share:.0%} of the demo's {n_demo} windows reconstruct within the tokenizer's training p99 "
            f"({p99:.3g}); the demo may be in another frame, scale or speed than the data (check step_length and "
            "coordinates) and its mask is unreliable"
            if flagged
            else f"{int(mask.sum())} tokens from {n_demo} demo windows (+{augmented.shape[0]} augmented); "
            f"{share:.0%} in distribution"
        )
    report = MaskReport(
        tokens_active=int(mask.sum()),
        windows=n_demo,
        augmented_windows=int(augmented.shape[0]),
        in_distribution_share=share,
        flagged=flagged,
        message=message,
        demo_windows=DemoWindows(
            windows=all_windows,
            tokens=tokens.cpu(),
            route=torch.as_tensor(demo_windows[:, 0], dtype=torch.float32),
            route_piece=torch.zeros(n_demo, dtype=torch.long),
        ),
    )
    return mask, report


def infer_route_mask(
    paths: list[tuple[np.ndarray, np.ndarray | None]],
    tokenizer: SkillTokenizer,
    config: MaskInferenceConfig,
    step_length: float,
    dt: float | None = None,
) -> tuple[SkillMask, MaskReport]:
    """The skill mask of a demo given as several paths (the pieces of a route with gaps). Each path goes through
    ``infer_mask``; the mask is the union and the report pools the windows. A piece too short for one window is
    skipped, unless every piece is.

    Args:
        paths: (K_i, P) positions with (K_i,) timestamps or None, one pair per path.
        tokenizer, config, step_length, dt: as in ``infer_mask``.
    """
    results: list[tuple[SkillMask, MaskReport]] = []
    errors: list[str] = []
    for points, timestamps in paths:
        try:
            results.append(
                infer_mask(points, tokenizer, config, step_length, timestamps, dt if timestamps is not None else None)
            )
        except ValueError as err:
            errors.append(str(err))
    if not results:
        raise ValueError(errors[0] if errors else "no demo path given")
    if len(results) == 1:
        return results[0]
    mask = torch.stack([m for m, _ in results]).any(dim=0)
    reports = [r for _, r in results]
    windows = sum(r.windows for r in reports)
    share = float(sum(r.in_distribution_share * r.windows for r in reports) / max(1, windows))
    flagged = any(r.flagged for r in reports) or share < IN_DISTRIBUTION_FLAG_SHARE
    message = (
        f"{int(mask.sum())} tokens from {windows} windows of {len(reports)} pieces of the route; "
        f"{share:.0%} in distribution"
    )
    if flagged:
        message = "; ".join(r.message for r in reports if r.flagged) or message
    report = MaskReport(
        tokens_active=int(mask.sum()),
        windows=windows,
        augmented_windows=sum(r.augmented_windows for r in reports),
        in_distribution_share=share,
        flagged=flagged,
        message=message,
        demo_windows=DemoWindows(
            windows=torch.cat([r.demo_windows.windows for r in reports]),
            tokens=torch.cat([r.demo_windows.tokens for r in reports]),
            route=torch.cat([r.demo_windows.route for r in reports if r.demo_windows.route is not None]),
            route_piece=torch.cat(
                [torch.full((r.windows,), i, dtype=torch.long) for i, r in enumerate(reports)]
            ),
        ),
    )
    return mask, report


def bernoulli_masks(batch: int, L: int, keep_prob: float, generator: torch.Generator) -> torch.Tensor:
    """(B, L) masks with each token kept independently with ``keep_prob``, on ``generator``'s device.

    One (B, L) uniform draw from ``generator`` and nothing else. A row may keep no token: the critic's target for it
    is the sink's value, which is what a mask that forbids every skill means.
    """
    if batch < 0 or L < 1:
        raise ValueError(f"bernoulli_masks needs batch >= 0 and L >= 1, got batch={batch}, L={L}")
    if not 0.0 < keep_prob < 1.0:
        raise ValueError(f"keep_prob must lie in (0, 1), got {keep_prob!r}")
    return torch.rand(batch, L, generator=generator, device=generator.device) < keep_prob


def uniform_int(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B,) long uniform integers in [low, high] (inclusive), elementwise, from one (B,) uniform draw."""
    u = torch.rand(low.shape, generator=generator, device=low.device)
    return torch.minimum(low + (u * (high - low + 1).to(u.dtype)).long(), high)


def pad_token_sequences(sequences: Sequence[torch.Tensor | np.ndarray], L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-episode (W_e,) token sequences in [0, L) -> ((E, W_max) PAD_TOKEN-padded table, (E,) lengths).

    Empty sequences are dropped (no segment can start in them); a sequence with a token outside [0, L) is refused.
    """
    seqs = [torch.as_tensor(np.asarray(s), dtype=torch.long).reshape(-1) for s in sequences if len(s) > 0]
    if not seqs:
        raise ValueError("the token sequences hold no non-empty sequence to cut segments from")
    for index, seq in enumerate(seqs):
        if int(seq.min()) < 0 or int(seq.max()) >= L:
            raise ValueError(
                f"token sequence {index} holds tokens outside [0, {L}): min {int(seq.min())}, max {int(seq.max())}"
            )
    table = torch.full((len(seqs), max(s.shape[0] for s in seqs)), PAD_TOKEN, dtype=torch.long)
    for i, s in enumerate(seqs):
        table[i, : s.shape[0]] = s
    return table, torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)


def _segment_tokens_mask(
    episode_tokens: torch.Tensor,
    episode: torch.Tensor,
    start: torch.Tensor,
    length: torch.Tensor,
    max_length: int,
    num_skills: int,
) -> torch.Tensor:
    """(B, L) bool: the tokens of windows start .. start + length - 1 of each row's episode."""
    offsets = torch.arange(max_length, device=episode.device)  # (M,)
    index = (start[:, None] + offsets[None]).clamp_max(episode_tokens.shape[1] - 1)  # (B, M)
    tokens = episode_tokens[episode[:, None], index]  # (B, M)
    valid = (offsets[None] < length[:, None]) & (tokens >= 0)
    counts = torch.zeros(episode.shape[0], num_skills, device=episode.device)
    counts.scatter_add_(1, tokens.clamp_min(0), valid.to(counts.dtype))
    return counts > 0


def segment_masks(
    episode_tokens: torch.Tensor,
    episode_windows: torch.Tensor,
    n: int,
    num_skills: int,
    generator: torch.Generator,
    *,
    segments_per_mask: int,
    min_windows: int,
    max_windows: int,
    anchor_episode: torch.Tensor | None = None,
    anchor_window: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Structured masks: unions of the tokens of 1..segments_per_mask contiguous data segments, on the device.

    Such masks are spatially coherent like a real demo's (a stretch of one route), unlike Bernoulli masks. A
    non-anchored segment's episode is drawn in proportion to its windows, so every data window is equally likely to
    be covered; its length is uniform in [min_windows, max_windows], capped at the episode's windows.

    Args:
        episode_tokens: (E, W_max) long per-episode window tokens, PAD_TOKEN-padded (``pad_token_sequences``).
        episode_windows: (E,) long windows per episode (episodes without windows are never drawn).
        n: number of masks B.
        num_skills: L.
        generator: device RNG.
        segments_per_mask: a mask unions 1..segments_per_mask segments (uniform).
        min_windows, max_windows: segment length range in windows, 1 <= min_windows <= max_windows.
        anchor_episode, anchor_window: (B,) long; when given, the first segment of row b contains window
            ``anchor_window[b]`` of episode ``anchor_episode[b]`` (indices into the same token table).

    Returns:
        (B, L) bool masks, and the first segment of each row: (B,) episode, (B,) start window, (B,) length.
    """
    if not 1 <= min_windows <= max_windows or segments_per_mask < 1:
        raise ValueError(
            "segment_masks needs 1 <= min_windows <= max_windows and segments_per_mask >= 1, got "
            f"min_windows={min_windows}, max_windows={max_windows}, segments_per_mask={segments_per_mask}"
        )
    device = episode_tokens.device
    lo = torch.full((n,), min_windows, device=device, dtype=torch.long)
    hi = torch.full((n,), max_windows, device=device, dtype=torch.long)
    count = uniform_int(torch.ones_like(lo), torch.full_like(lo, segments_per_mask), generator)
    mask = torch.zeros(n, num_skills, dtype=torch.bool, device=device)
    for k in range(segments_per_mask):
        if k == 0 and anchor_episode is not None and anchor_window is not None:
            episode = anchor_episode
            windows = episode_windows[episode]
            length = torch.minimum(uniform_int(lo, hi, generator), windows)
            first = (anchor_window - length + 1).clamp_min(0)
            last = torch.minimum(anchor_window, windows - length)
            start = uniform_int(first, last, generator)
        else:
            episode = torch.multinomial(episode_windows.float(), n, replacement=True, generator=generator)
            windows = episode_windows[episode]
            length = torch.minimum(uniform_int(lo, hi, generator), windows)
            start = uniform_int(torch.zeros_like(windows), windows - length, generator)
        segment = _segment_tokens_mask(episode_tokens, episode, start, length, max_windows, num_skills)
        mask |= segment & (k < count)[:, None]
        if k == 0:
            first_segment = (episode, start, length)
    return (mask, *first_segment)
