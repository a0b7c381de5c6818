"""Pure functions that turn position paths into the fixed-length windows the skill tokenizer reads.
Data trajectories and observation-only demos both pass through here, so a demo is windowed exactly like the data.

Feature design (``window_features``): a window of H positions becomes
``[p_1, (p_2 - p_1) * s, ..., (p_H - p_1) * s]``.

* The absolute start ``p_1`` is kept because a skill token must name *where* a motion happens, not only its
  shape: "move right for 16 steps" in the upper corridor and in the lower corridor must be different tokens,
  otherwise a demo along one route would also switch on the tokens of a blocked route (measured on
  PointMaze: without it route purity collapses; with it purity >= 0.997 and leakage <= 0.2 %).
* Motion is written as displacements from the start, not as per-step velocities: a demo has no velocities,
  finite differences of noisy positions amplify noise, and displacements from one anchor integrate it away.
* ``s`` (``displacement_scale``) sets how much motion shape weighs against location in the Euclidean geometry
  the codebook partitions. The tokenizer normalises features isotropically (one shared std), precisely so this
  weighting survives normalisation; per-feature standardisation would cancel it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from numpy.lib.stride_tricks import sliding_window_view

# Segments shorter than this (in world units) are treated as repeated points: arc-length interpolation
# needs a strictly increasing arc-length axis.
MIN_SEGMENT_LENGTH = 1e-9
# A time-resampled demo whose median step differs from the data's step by more than this factor moves at a
# speed the tokenizer never saw; we warn because its windows will cover too much or too little ground.
STEP_MISMATCH_WARN_FACTOR = 2.0
DEFAULT_TIME_WARP: tuple[float, float] = (0.4, 1.2)
DEFAULT_OFFSET_SIGMA = 0.15
DEFAULT_DISPLACEMENT_SCALE = 0.5


@dataclass(frozen=True)
class WindowFeatures:
    """How a window of positions becomes the flat feature vector the tokenizer quantises."""

    displacement_scale: float = DEFAULT_DISPLACEMENT_SCALE
    """Factor on the displacements (p_t - p_1): the weight of motion shape relative to absolute start position.
    With per-step motion ~0.1 world units and H = 16, 0.5 keeps the two blocks of comparable total variance."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.displacement_scale) and self.displacement_scale > 0):
            raise ValueError(
                f"WindowFeatures.displacement_scale must be a finite number > 0, got {self.displacement_scale!r}"
            )

    @staticmethod
    def feature_dim(horizon: int, pos_dim: int) -> int:
        """Length of the flat feature vector for windows of ``horizon`` steps in ``pos_dim`` dimensions."""
        return horizon * pos_dim

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, H, P) windows -> (B, H*P) features; see ``window_features``."""
        return window_features(windows, self.displacement_scale)


def position_windows(positions: np.ndarray, horizon: int, stride: int = 1) -> np.ndarray:
    """Cut one path into consecutive windows of ``horizon`` steps.

    Call it once per episode and concatenate: a window spanning two episodes is not a skill.

    Args:
        positions: (T, P) positions of one path, in time order.
        horizon: H, steps per window (>= 2: a one-step window has no motion).
        stride: steps between the starts of consecutive windows (>= 1).

    Returns:
        (N, H, P) windows, N = floor((T - H) / stride) + 1, or (0, H, P) when T < H. A fresh contiguous array
        (not a read-only view), so ``torch.from_numpy`` can use it directly.
    """
    if positions.ndim != 2:
        raise ValueError(f"positions must have shape (T, P), got shape {positions.shape}")
    if horizon < 2:
        raise ValueError(f"horizon must be >= 2 (a window needs motion), got {horizon}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    length, pos_dim = positions.shape
    if length < horizon:
        return np.zeros((0, horizon, pos_dim), dtype=positions.dtype)
    view = sliding_window_view(positions, horizon, axis=0)[::stride]  # (N, P, H)
    return np.array(rearrange(view, "n p h -> n h p"), order="C", copy=True)


def arc_lengths(points: np.ndarray) -> np.ndarray:
    """(K,) cumulative arc length of a (K, P) path, from 0 at its first point."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def points_at_arc(points: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(M, P) points of a (K, P) path at arc lengths ``s`` (M,), linear between the path's points."""
    arc = arc_lengths(points)
    return np.stack([np.interp(s, arc, points[:, d]) for d in range(points.shape[1])], axis=1)


def resample_path(
    points: np.ndarray,
    step_length: float,
    timestamps: np.ndarray | None = None,
    dt: float | None = None,
) -> np.ndarray:
    """Re-express a demo path at the data's time spacing, so its windows cover the same ground as data windows.

    Two modes:

    * arc length (no ``timestamps``): points every ``step_length`` world units along the polyline through
      ``points``, starting at the first point. Point density of the demo does not matter, only its route.
      The tail shorter than one step is dropped so every step has the same length. Note that a dense, noisy
      demo has an inflated arc length (the jitter counts), so its resampled steps cover slightly less ground.
    * time (``timestamps`` and ``dt``): positions linearly interpolated at t_0, t_0 + dt, ... <= t_end; keeps
      the demo's own speed profile. ``step_length`` is then only used to warn when the demo's median step is
      more than ``STEP_MISMATCH_WARN_FACTOR`` away from the data's.

    Args:
        points: (K, P) demo positions in world coordinates, in path order.
        step_length: the data's typical per-step displacement (e.g. the median ||p_{t+1} - p_t||), > 0.
        timestamps: (K,) strictly increasing times of ``points``; requires ``dt``.
        dt: the data's control period in the units of ``timestamps``; requires ``timestamps``.

    Returns:
        (T, P) float64 positions; T = 1 when the path is shorter than one step.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"points must have shape (K, P) with K >= 1, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points contain NaN or inf; clean the demo before resampling")
    if not (math.isfinite(step_length) and step_length > 0):
        raise ValueError(f"step_length must be a finite number > 0, got {step_length!r}")
    if (timestamps is None) != (dt is None):
        raise ValueError(
            "timestamps and dt go together: give both for time resampling, or neither for arc-length resampling "
            f"(got timestamps={'set' if timestamps is not None else None}, dt={dt!r})"
        )
    if timestamps is not None and dt is not None:
        return _resample_in_time(points, step_length, np.asarray(timestamps, dtype=np.float64), dt)
    return _resample_by_arc_length(points, step_length)


def _resample_by_arc_length(points: np.ndarray, step_length: float) -> np.ndarray:
    """(K, P) polyline -> (T, P) points spaced ``step_length`` apart along it."""
    segment = np.linalg.norm(np.diff(points, axis=0), axis=1)  # (K-1,)
    keep = np.concatenate([[True], segment > MIN_SEGMENT_LENGTH])
    points = points[keep]
    if points.shape[0] == 1:
        return points.copy()
    arc = np.concatenate([[0.0], np.cumsum(segment[segment > MIN_SEGMENT_LENGTH])])  # (K',)
    targets = np.arange(0.0, arc[-1] + MIN_SEGMENT_LENGTH, step_length)  # (T,)
    return np.stack([np.interp(targets, arc, points[:, d]) for d in range(points.shape[1])], axis=1)


def _resample_in_time(points: np.ndarray, step_length: float, timestamps: np.ndarray, dt: float) -> np.ndarray:
    """(K, P) timed points -> (T, P) positions every ``dt``."""
    if timestamps.shape != (points.shape[0],):
        raise ValueError(f"timestamps must have shape ({points.shape[0]},) to match points, got {timestamps.shape}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    if points.shape[0] > 1 and not np.all(np.diff(timestamps) > 0):
        raise ValueError("timestamps must be strictly increasing")
    targets = np.arange(timestamps[0], timestamps[-1] + dt * MIN_SEGMENT_LENGTH, dt)  # (T,)
    resampled = np.stack([np.interp(targets, timestamps, points[:, d]) for d in range(points.shape[1])], axis=1)
    if resampled.shape[0] > 1:
        median_step = float(np.median(np.linalg.norm(np.diff(resampled, axis=0), axis=1)))
        ratio = median_step / step_length
        if ratio > STEP_MISMATCH_WARN_FACTOR or ratio < 1.0 / STEP_MISMATCH_WARN_FACTOR:
            warnings.warn(
                f"time-resampled demo moves {median_step:.4g} per step but the data moves {step_length:.4g}; "
                "its windows will not cover the same ground as the data's. Resample by arc length "
                "(timestamps=None) unless the demo's speed matters.",
                stacklevel=3,
            )
    return resampled


def window_features(windows: torch.Tensor, scale: float) -> torch.Tensor:
    """Start position plus scaled displacements from it; the design is explained in the module doc string.

    Args:
        windows: (B, H, P) positions.
        scale: the displacement scale s.

    Returns:
        (B, H*P) features ``[p_1, (p_2 - p_1) s, ..., (p_H - p_1) s]``, time-major.
    """
    if windows.ndim != 3:
        raise ValueError(f"windows must have shape (B, H, P), got shape {tuple(windows.shape)}")
    start = windows[:, :1]  # (B, 1, P)
    displacement = (windows[:, 1:] - start) * scale  # (B, H-1, P)
    return rearrange(torch.cat([start, displacement], dim=1), "b h p -> b (h p)")


def augment_path(
    points: np.ndarray,
    rng: np.random.Generator,
    time_warp: tuple[float, float] = DEFAULT_TIME_WARP,
    offset_sigma: float = DEFAULT_OFFSET_SIGMA,
    n: int = 16,
) -> list[np.ndarray]:
    """Perturbed copies of a path already at the data's step spacing (the output of ``resample_path``).

    One clean demo passes through one speed and one line; the data pass through many. Each copy is
    re-sampled at ``w`` times the path's median step (w ~ U(time_warp): w < 1 is a slower agent, whose windows
    cover less ground) and shifted by one constant offset ~ N(0, offset_sigma^2 I). The offset is constant
    per copy because a per-point jitter would corrupt the displacements the tokens read. Measured on
    PointMaze: warps 0.4-1.2x with sigma 0.15 raised coverage of the open route from ~0.94 to ~0.99 with
    <= 0.6 % leakage; sigma 0.3 leaked 2-20 %.

    Args:
        points: (T, P) path at the data's step spacing.
        rng: source of randomness (seeded by the caller).
        time_warp: (low, high) range of speed factors, 0 < low <= high.
        offset_sigma: std of the per-copy offset in world units, >= 0.
        n: number of copies, >= 0.

    Returns:
        ``n`` arrays of shape (T_i, P); the original is not included.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"points must have shape (T, P) with T >= 1, got shape {points.shape}")
    low, high = time_warp
    if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(f"time_warp must be (low, high) with 0 < low <= high, got {time_warp!r}")
    if not (math.isfinite(offset_sigma) and offset_sigma >= 0):
        raise ValueError(f"offset_sigma must be a finite number >= 0, got {offset_sigma!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    moving = steps[steps > MIN_SEGMENT_LENGTH]
    base_step = float(np.median(moving)) if moving.size else 0.0
    copies: list[np.ndarray] = []
    for _ in range(n):
        warp = rng.uniform(low, high)
        offset = rng.normal(0.0, offset_sigma, size=points.shape[1]) if offset_sigma > 0 else 0.0
        warped = _resample_by_arc_length(points, warp * base_step) if base_step > 0 else points.copy()
        copies.append(warped + offset)
    return copies
