"""A learned localizer: one egocentric RGB frame -> the agent's pose (x, z, cos h, sin h), so that the skills, which
plan over poses, can run from pixels alone. A small CNN regresses the normalised position and the heading's unit
vector; it trains on frames of the source world only and is tested on the changed target worlds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

KIND = "localizer"
POSE_DIM = 4
"""(x, z, cos h, sin h): the house's GPS + compass observation."""
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25
"""Pixels in [0, 1] are centred and scaled by these before the first convolution."""
PREDICT_BATCH = 512
"""Frames per forward pass when locating many frames at once."""
STAYED_HEADING_RAD = 1e-6
"""Radians: a particle stayed put when its position did not change at all and its heading by less than this (a turn
is 15 degrees)."""


def wrapped(angles: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped into [-pi, pi)."""
    return (angles + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class LocalizerConfig:
    channels: tuple[int, ...] = (16, 32, 64, 64)
    """Output channels of the stride-2 convolutions (5x5 kernel first, 3x3 after)."""
    hidden: int = 256
    """Width of the hidden layer of the head."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 128
    """Frames per step."""
    steps: int = 2500
    """Training steps: about 4 minutes on one CPU thread at 80x60 frames."""
    heading_weight: float = 1.0
    """Weight of the heading's squared error (unit vector) against the position's (in standard deviations)."""
    log_every: int = 50
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"LocalizerConfig.channels must be a non-empty list of sizes >= 1, got {self.channels!r}")
        for name in ("hidden", "batch_size", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"LocalizerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "heading_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LocalizerConfig.{name} must be > 0, got {getattr(self, name)!r}")


class Localizer(HubComponent):
    """(B, H, W, 3) uint8 egocentric frames -> (B, 4) poses (x, z, cos h, sin h)."""

    checkpoint_kind = KIND

    position_mean: Tensor
    position_std: Tensor

    def __init__(self, config: LocalizerConfig, height: int, width: int) -> None:
        super().__init__()
        self.config, self.frame_size = config, (height, width)
        layers: list[nn.Module] = []
        channels_in = 3
        for i, channels in enumerate(config.channels):
            kernel = 5 if i == 0 else 3
            layers += [nn.Conv2d(channels_in, channels, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
            channels_in = channels
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, height, width)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, config.hidden), nn.ReLU(), nn.Linear(config.hidden, POSE_DIM))
        self.register_buffer("position_mean", torch.zeros(2))
        self.register_buffer("position_std", torch.ones(2))

    @property
    def device(self) -> torch.device:
        return self.position_mean.device

    def forward(self, frames: Tensor) -> Tensor:
        """(B, H, W, 3) uint8 -> (B, 4) raw outputs: the normalised position and an unnormalised heading vector."""
        pixels = rearrange(frames, "b h w c -> b c h w").float() / 255.0
        return self.head(self.features((pixels - PIXEL_MEAN) / PIXEL_STD))

    def poses(self, raw: Tensor) -> Tensor:
        """(B, 4) raw outputs -> (B, 4) poses: the position in metres, the heading as a unit vector."""
        position = raw[:, :2] * self.position_std + self.position_mean
        heading = raw[:, 2:] / raw[:, 2:].norm(dim=1, keepdim=True).clamp_min(1e-6)
        return torch.cat([position, heading], dim=1)

    def compute_loss(self, frames: Tensor, poses: Tensor) -> Tensor:
        """Mean squared error of the normalised position plus heading_weight times that of the heading vector."""
        raw = self(frames)
        position = (poses[:, :2] - self.position_mean) / self.position_std
        return ((raw[:, :2] - position) ** 2).sum(1).mean() + self.config.heading_weight * (
            (raw[:, 2:] - poses[:, 2:]) ** 2
        ).sum(1).mean()

    @torch.no_grad()
    def locate(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 frames -> (N, 4) float64 poses, PREDICT_BATCH frames at a time."""
        frames = np.asarray(frames)
        if frames.shape[1:] != (*self.frame_size, 3):
            raise ValueError(f"frames must be (N, {self.frame_size[0]}, {self.frame_size[1]}, 3), got {frames.shape}")
        out = [
            self.poses(self(torch.as_tensor(frames[i : i + PREDICT_BATCH], device=self.device))).cpu().numpy()
            for i in range(0, len(frames), PREDICT_BATCH)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, POSE_DIM))

    def checkpoint_extra(self) -> dict[str, Any]:
        height, width = self.frame_size
        return {"height": height, "width": width}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> Localizer:
        """In eval mode, on ``device`` (default: the CPU; it runs on one frame per env step)."""
        model = cls(config_from_dict(LocalizerConfig, values, folder / CONFIG_NAME), extra["height"], extra["width"])
        load_module_state(model, state, folder / WEIGHTS_NAME)
        return model.to(device or "cpu").eval()


class FloorMap(Protocol):
    """The map the agent is given (the house's walls, closed doorways and furniture) and how its actions move it."""

    def dead_reckon(self, poses: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(N, 4) poses (x, z, cos h, sin h) and (N,) actions -> (N, 4) the poses after them, a forward step that
        the map shows blocked leaving the position where it was (as the simulator does)."""
        ...

    def standable(self, positions: np.ndarray) -> np.ndarray:
        """(N, 2) -> (N,) bool: the agent can stand there (on a floor, touching no wall or furniture)."""
        ...

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, z0, x1, z1): a rectangle holding every floor."""
        ...


@dataclass(frozen=True)
class PoseFilter:
    """A particle filter over poses (x, z, h): each particle moves by the action taken, a forward step into a wall
    or furniture leaving it in place (the actions have no noise, so this dead reckoning is exact from the true
    pose), and is weighted by how well it agrees with the localizer's reading of the new frame and with whether the
    frame changed (a step the simulator refused shows the same frame again: the particles that the map stopped
    should be those whose frames stood still). A frame's error repeats over neighbouring frames (a view that
    misleads once misleads for many steps: the two long halls look alike), so each reading's likelihood is
    tempered: evidence accrues over many frames, and the map rules out the poses the actions could not have reached.
    Half the first particles are spread over the whole floor, and a few are redrawn around each new reading, so a
    wrong start and a lost track recover; where no particle explains a step (all moved while the frame stood still),
    some are redrawn near the others where the step agrees. The estimate is the mean of the posterior's main mode,
    not of every particle: a cloud split between two places has its mean where neither is."""

    particles: int = 500
    """Poses tracked per env."""
    position_sigma: float = 0.75
    """Metres: the spread of a reading's position error (one frame's median error is ~0.8 m)."""
    heading_sigma_deg: float = 8.0
    """Degrees: the spread of a reading's heading error."""
    outlier: float = 0.2
    """Likelihood floor added to each of the position's and heading's (peak 1): a reading metres off (one frame in
    ten) lowers the particles near the truth by at most this much, rather than wiping them out."""
    temper: float = 0.2
    """Power of each reading's likelihood: how much of an independent frame's evidence one correlated frame is."""
    uniform_start: float = 0.5
    """Share of the first particles spread over the whole floor (the rest around the first reading)."""
    reseed: float = 0.05
    """Share of the particles redrawn around the newest reading at each resampling."""
    position_jitter: float = 0.02
    """Metres of noise added to the particles at each resampling, to keep them apart."""
    heading_jitter_deg: float = 1.0
    """Degrees of noise added to the particles' headings at each resampling."""
    mode_radius: float = 0.3
    """Metres: the estimate is the weighted mean of the particles within this radius of the posterior's main mode
    (found by mean shift from its densest particle); 0 gives the mean of all particles. Beside a doorway
    the particles split between its two jambs, and their mean lies in the gap, where a step would be free: pushing
    forward from there into the real jamb would never tell the two apart."""
    stall_mismatch: float = 0.05
    """Weight kept by a particle that the map stopped at a wall while the frames show the agent moved, or that moved
    while the frames show it stopped (the same frame again)."""
    rescue_below: float = 0.5
    """When the particles that agree with whether the frame changed carry less than this share of the weight, the
    others are redrawn near the pre-step particles where the step agrees (PoseTracker._rescue)."""
    rescue_sigma: float = 0.2
    """Metres: the spread of those redraws around the pre-step particles."""
    seed: int = 0
    """Seed of the filter's random draws (it is deterministic given the env's)."""

    def __post_init__(self) -> None:
        if self.particles < 2:
            raise ValueError(f"PoseFilter.particles must be >= 2, got {self.particles!r}")
        for name in ("position_sigma", "heading_sigma_deg", "temper", "rescue_sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PoseFilter.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("outlier", "position_jitter", "heading_jitter_deg", "stall_mismatch", "mode_radius"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PoseFilter.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("uniform_start", "reseed", "rescue_below"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"PoseFilter.{name} must be in [0, 1), got {getattr(self, name)!r}")

    def track(self, floor: FloorMap, reading: np.ndarray, rng: np.random.Generator) -> PoseTracker:
        """A tracker started from the first (4,) reading."""
        return PoseTracker(self, floor, reading, rng)


class PoseTracker:
    """One env's particles (PoseFilter): ``estimate`` after the first reading and after every ``step``."""

    def __init__(self, config: PoseFilter, floor: FloorMap, reading: np.ndarray, rng: np.random.Generator) -> None:
        self.config, self.floor, self.rng = config, floor, rng
        spread = self._on_floor(round(config.uniform_start * config.particles))
        around = self._around(reading, config.particles - len(spread))
        self.poses = np.concatenate([spread, around])  # (P, 3) x, z, h
        self.weights = np.full(config.particles, 1.0 / config.particles)
        self.estimate = self._update(reading)
        """(4,) the weighted mean pose (x, z, cos h, sin h) of the main mode after the latest reading."""

    def _mean(self) -> np.ndarray:
        """(4,) the weighted mean pose of the main mode's particles (PoseFilter.mode_radius)."""
        weights, radius = self.weights, self.config.mode_radius
        if radius > 0:
            weights = weights * self._main_mode(radius)
            weights = weights / weights.sum()
        position = weights @ self.poses[:, :2]
        heading = math.atan2(weights @ np.sin(self.poses[:, 2]), weights @ np.cos(self.poses[:, 2]))
        return np.array([position[0], position[1], math.cos(heading), math.sin(heading)])

    def _main_mode(self, radius: float, seeds: int = 64, iterations: int = 5) -> np.ndarray:
        """(P,) bool: the particles within ``radius`` of the weighted positions' main mode, found by mean shift with a
        flat kernel from the densest of ``seeds`` particles picked evenly by weight."""
        positions, weights = self.poses[:, :2], self.weights
        picks = np.minimum(np.searchsorted(np.cumsum(weights), (np.arange(seeds) + 0.5) / seeds), len(weights) - 1)
        near = ((positions[picks, None] - positions[None]) ** 2).sum(-1) <= radius**2  # (seeds, P)
        centre = positions[picks[(near * weights).sum(1).argmax()]]
        members = ((positions - centre) ** 2).sum(1) <= radius**2
        for _ in range(iterations):
            if not weights[members].sum() > 0:
                break
            centre = weights[members] @ positions[members] / weights[members].sum()
            members = ((positions - centre) ** 2).sum(1) <= radius**2
        return members

    def step(self, action: int, reading: np.ndarray, still: bool | None = None) -> np.ndarray:
        """Move every particle by ``action``, weigh it by the new (4,) ``reading`` and, when known, by whether the
        pose stayed ``still`` (a step the simulator refused shows the very same frame again); -> (4,) the
        estimate."""
        before = self.poses
        poses, stayed = self._moved(before, action)
        self.poses = poses
        prior = np.ones(len(poses))
        if still is not None:
            agrees = stayed == still
            prior = np.where(agrees, 1.0, self.config.stall_mismatch)
            if self.weights[agrees].sum() < self.config.rescue_below:
                prior = self._rescue(before, action, still, agrees, prior)
        self.estimate = self._update(reading, prior)
        if still:
            self.estimate = self._explaining_stall(self.estimate, action)
        return self.estimate

    def _explaining_stall(self, estimate: np.ndarray, action: int) -> np.ndarray:
        """The frame stood still: the body could not take ``action``. Where the (4,) estimate could (the mean of
        particles stopped around a doorway's jamb lies off the jamb), the particle nearest it that could not instead:
        an estimate from which the refused step looks free has a controller repeat that step forever."""
        x, z, cos_h, sin_h = estimate
        _, stalls = self._moved(np.array([[x, z, math.atan2(sin_h, cos_h)]]), action)
        if stalls[0]:
            return estimate
        _, stopped = self._moved(self.poses, action)
        if not stopped.any():
            return estimate
        candidates = self.poses[stopped]
        nearest = candidates[((candidates[:, :2] - estimate[:2]) ** 2).sum(1).argmin()]
        return np.array([nearest[0], nearest[1], math.cos(nearest[2]), math.sin(nearest[2])])

    def _moved(self, poses: np.ndarray, action: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) poses -> (N, 3) the poses after ``action`` on the map and (N,) whether they stayed put."""
        x, z, h = poses.T
        moved = self.floor.dead_reckon(np.stack([x, z, np.cos(h), np.sin(h)], axis=1), np.full(len(h), action))
        after = np.stack([moved[:, 0], moved[:, 1], np.arctan2(moved[:, 3], moved[:, 2])], axis=1)
        # a refused step leaves the position exactly where it was; the heading comes back through arctan2(sin, cos),
        # which can change its last bits, or wrap it into (-pi, pi] where resampling's jitter took it out
        turned = wrapped(after[:, 2] - poses[:, 2])
        return after, np.all(after[:, :2] == poses[:, :2], axis=1) & (np.abs(turned) < STAYED_HEADING_RAD)

    def _rescue(
        self, before: np.ndarray, action: int, still: bool, agrees: np.ndarray, prior: np.ndarray
    ) -> np.ndarray:
        """Most of the weight sits on particles that the step moved while the frame stood still (or the reverse):
        none is where the body is. Redraw those particles near where the others were before the step (PoseFilter.
        rescue_sigma), keeping draws whose step agrees with the frame, as a mixture proposal draws from the
        sensor's side; -> the prior weights with the redrawn particles' raised to 1."""
        config, wrong = self.config, np.flatnonzero(~agrees)
        picks = self.rng.choice(len(before), size=4 * len(wrong), p=self.weights)
        drawn = before[picks].copy()
        drawn[:, :2] += config.rescue_sigma * self.rng.standard_normal((len(drawn), 2))
        after, stayed = self._moved(drawn, action)
        found = after[(stayed == still) & self.floor.standable(drawn[:, :2])][: len(wrong)]
        replaced = wrong[: len(found)]
        self.poses[replaced] = found
        self.weights[replaced] = self.weights.mean()
        prior = prior.copy()
        prior[replaced] = 1.0
        return prior

    def _update(self, reading: np.ndarray, prior: np.ndarray | float = 1.0) -> np.ndarray:
        """Weigh the particles by ``prior`` and ``reading``; -> (4,) their mean; then resample them once half are
        spent."""
        self.weights = self.weights * prior
        self._weigh(reading)
        mean = self._mean()
        if 1.0 / (self.weights**2).sum() < self.config.particles / 2:
            self._resample(reading)
        return mean

    def _around(self, reading: np.ndarray, count: int) -> np.ndarray:
        """(count, 3) poses drawn from a reading's error spread."""
        sigma, heading_sigma = self.config.position_sigma, math.radians(self.config.heading_sigma_deg)
        position = reading[:2] + sigma * self.rng.standard_normal((count, 2))
        heading = math.atan2(reading[3], reading[2]) + heading_sigma * self.rng.standard_normal(count)
        return np.concatenate([position, heading[:, None]], axis=1)

    def _on_floor(self, count: int) -> np.ndarray:
        """(count, 3) poses uniform over the floor the agent can stand on, any heading."""
        x0, z0, x1, z1 = self.floor.extent
        found = np.zeros((0, 2))
        while len(found) < count:
            drawn = self.rng.uniform((x0, z0), (x1, z1), (4 * count, 2))
            found = np.concatenate([found, drawn[self.floor.standable(drawn)]])
        return np.concatenate([found[:count], self.rng.uniform(-math.pi, math.pi, (count, 1))], axis=1)

    def _weigh(self, reading: np.ndarray) -> None:
        config = self.config
        distance2 = ((self.poses[:, :2] - reading[:2]) ** 2).sum(1)
        turn = wrapped(self.poses[:, 2] - math.atan2(reading[3], reading[2]))
        likelihood = (np.exp(-0.5 * distance2 / config.position_sigma**2) + config.outlier) * (
            np.exp(-0.5 * (turn / math.radians(config.heading_sigma_deg)) ** 2) + config.outlier
        )
        weights = self.weights * likelihood**config.temper * self.floor.standable(self.poses[:, :2])
        total = weights.sum()
        # every particle ruled out (none can stand where it is): keep them, equally weighted, for the readings to sort
        self.weights = weights / total if total > 0 else np.full(len(weights), 1.0 / len(weights))

    def _resample(self, reading: np.ndarray) -> None:
        """Systematic resampling; then jitter, and ``reseed`` of the particles redrawn around ``reading``."""
        config, count = self.config, self.config.particles
        picks = np.searchsorted(np.cumsum(self.weights), (self.rng.random() + np.arange(count)) / count)
        poses = self.poses[np.minimum(picks, count - 1)]
        poses[:, :2] += config.position_jitter * self.rng.standard_normal((count, 2))
        poses[:, 2] += math.radians(config.heading_jitter_deg) * self.rng.standard_normal(count)
        redrawn = round(config.reseed * count)
        poses[:redrawn] = self._around(reading, redrawn)
        self.poses, self.weights = poses, np.full(count, 1.0 / count)


@dataclass(frozen=True)
class LocalizerReport:
    losses: tuple[float, ...]
    final_loss: float
    frames: int
    steps: int
    seconds: float


def train_localizer(
    frames: np.ndarray, poses: np.ndarray, config: LocalizerConfig, settings: LoopSettings | None = None
) -> tuple[Localizer, LocalizerReport]:
    """Fit (N, H, W, 3) uint8 frames to their (N, 4) poses (x, z, cos h, sin h)."""
    if frames.ndim != 4 or frames.shape[3] != 3 or poses.shape != (len(frames), POSE_DIM):
        raise ValueError(f"frames must be (N, H, W, 3) and poses (N, 4), got {frames.shape} and {poses.shape}")
    started = time.perf_counter()
    accelerator = make_accelerator(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Localizer(config, frames.shape[1], frames.shape[2])
    positions = torch.as_tensor(poses[:, :2], dtype=torch.float32)
    model.position_mean.copy_(positions.mean(0))
    model.position_std.copy_(positions.std(0).clamp_min(1e-6))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model, optimiser = accelerator.prepare(model, optimiser)
    device = accelerator.device
    frame_t = torch.as_tensor(frames, device=device)  # uint8: a quarter of the float32 memory
    pose_t = torch.as_tensor(poses, dtype=torch.float32, device=device)
    rng = torch.Generator(device=device).manual_seed(config.seed)
    model.train()

    def step(_: int) -> dict[str, Tensor]:
        idx = torch.randint(len(frame_t), (config.batch_size,), generator=rng, device=device)
        loss = accelerator.unwrap_model(model).compute_loss(frame_t[idx], pose_t[idx])
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimiser.step()
        return {"loss": loss.detach()}

    history = run_loop("localizer", accelerator, config.steps, step, {"rng": GeneratorState(rng)},
                       settings or LoopSettings(), log_every=config.log_every)  # fmt: skip
    losses = tuple(h["loss"] for h in history)
    localizer: Localizer = accelerator.unwrap_model(model)
    report = LocalizerReport(losses, losses[-1] if losses else math.nan, len(frames), config.steps,
                             time.perf_counter() - started)  # fmt: skip
    return localizer.eval(), report


@dataclass(frozen=True)
class PoseErrors:
    """How far estimated poses are from the true ones, over N frames."""

    frames: int
    position_median_m: float
    position_p90_m: float
    heading_median_deg: float
    heading_p90_deg: float


def pose_errors(estimated: np.ndarray, true: np.ndarray) -> PoseErrors:
    """(N, 4) estimated and (N, 4) true poses (x, z, cos h, sin h) -> the median and 90th percentile of the position
    error (metres) and of the absolute heading error (degrees)."""
    position = np.linalg.norm(estimated[:, :2] - true[:, :2], axis=1)
    gap = np.arctan2(estimated[:, 3], estimated[:, 2]) - np.arctan2(true[:, 3], true[:, 2])
    heading = np.degrees(np.abs(wrapped(gap)))
    return PoseErrors(
        len(true), float(np.median(position)), float(np.quantile(position, 0.9)), float(np.median(heading)),
        float(np.quantile(heading, 0.9)),
    )  # fmt: skip


__all__ = [
    "Localizer",
    "LocalizerConfig",
    "LocalizerReport",
    "FloorMap",
    "PoseErrors",
    "PoseFilter",
    "PoseTracker",
    "pose_errors",
    "train_localizer",
]
