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
from typing import Any

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


@dataclass(frozen=True)
class PoseFilter:
    """Fuses the pose predicted from the last estimate and the action taken (dead reckoning) with the localizer's
    reading of the new frame. A single frame can be ambiguous (the two long halls look alike from many poses: 90th
    percentile error ~4 m), and dead reckoning drifts where a wall stops a step; a small gain averages the frames'
    errors over several steps, and the gate bounds how far one outlying frame can pull the position."""

    gain: float = 0.1
    """Share of the gap between predicted and read position taken each step."""
    gate: float = 0.3
    """Metres: a gap beyond this pulls as hard as one of this length (a wrong estimate still converges, slowly)."""
    heading_gain: float = 0.3
    """Share of the gap between predicted and read heading taken each step."""

    def __post_init__(self) -> None:
        for name in ("gain", "heading_gain"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"PoseFilter.{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not self.gate > 0:
            raise ValueError(f"PoseFilter.gate must be > 0, got {self.gate!r}")

    def fuse(self, predicted: np.ndarray, read: np.ndarray) -> np.ndarray:
        """(E, 4) predicted and (E, 4) read poses (x, z, cos h, sin h) -> (E, 4) fused poses."""
        gap = read[:, :2] - predicted[:, :2]
        length = np.linalg.norm(gap, axis=1, keepdims=True)
        position = predicted[:, :2] + self.gain * gap * np.minimum(1.0, self.gate / np.maximum(length, 1e-9))
        heading = np.arctan2(predicted[:, 3], predicted[:, 2])
        turn = np.arctan2(read[:, 3], read[:, 2]) - heading
        heading = heading + self.heading_gain * ((turn + math.pi) % (2 * math.pi) - math.pi)
        return np.concatenate([position, np.cos(heading)[:, None], np.sin(heading)[:, None]], axis=1)


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
    heading = np.degrees(np.abs((gap + math.pi) % (2 * math.pi) - math.pi))
    return PoseErrors(
        len(true), float(np.median(position)), float(np.quantile(position, 0.9)), float(np.median(heading)),
        float(np.quantile(heading, 0.9)),
    )  # fmt: skip


__all__ = [
    "Localizer",
    "LocalizerConfig",
    "LocalizerReport",
    "PoseErrors",
    "PoseFilter",
    "pose_errors",
    "train_localizer",
]
