"""Diffuser (Janner et al., "Planning with Diffusion for Flexible Behavior Synthesis", ICML 2022) as it was run on
Maze2D: one diffusion model over whole (observation, action) trajectories of the source data, long enough to hold a
route, conditioned only by inpainting: the current observation at the first step and the goal position at the last.
It is trained once on the source world and knows nothing of a changed one; that is what it is a baseline for.

As in the authors' maze2d configs: a temporal U-Net (skills/temporal_unet.py), min-max normalisation to [-1, 1], a
cosine beta schedule, the model predicts the clean trajectory x0 (``predict_epsilon=False``), the inpainted entries
are written into the noisy trajectory at every denoising step (and in training), and the weights used to plan are an
exponential moving average. The noise schedule and the steps are diffusers' DDPMScheduler (training) and
DDIMScheduler (planning, ``inference_steps`` steps; Diffuser sampled all 256 DDPM steps on a GPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.temporal_unet import TemporalUNet, check_unet_shape
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop
from mstt.skills.validation import require, require_device, resolve_device

CHECKPOINT_KIND = "diffuser"
PREDICTIONS = ("sample", "epsilon")
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
RANGE_FLOOR = 1e-6
CLIP_RANGE = 1.0
DDIM_TIMESTEP_SPACING = "trailing"
"""Few-step DDIM starts at the last training timestep (pure noise)."""

Tensor = torch.Tensor
_check = partial(require, config="DiffuserConfig")


@dataclass
class DiffuserConfig:
    """Every hyper-parameter of the Diffuser baseline (defaults: the authors' maze2d settings where the CPU allows)."""

    horizon: int = 384
    """Points per planned trajectory; with ``stride`` they span (horizon - 1) * stride + 1 env steps, which should
    be at least a route's length in the data's steps (maze2d-large used 384 points at stride 1)."""
    stride: int = 1
    """Env steps between planned points. Diffuser planned every step (1); a stride k > 1 diffuses every k-th state
    of the data's windows (a k times shorter sequence for the same span) and ``plan`` fills the steps between the
    points by linear interpolation: what a CPU can train in minutes instead of a GPU in days."""
    hidden: int = 32
    """U-Net channels of the first level (maze2d: dim 32)."""
    depth: int = 3
    """U-Net down-sampling levels; level i has hidden * 2**i channels."""
    kernel_size: int = 5
    norm_groups: int = 8
    cond_dim: int = 64
    """Width of the timestep embedding each block is FiLM-conditioned on (the plan has no other condition)."""
    timestep_embed_dim: int = 32
    train_timesteps: int = 256
    """Diffusion steps (maze2d: n_diffusion_steps 256)."""
    inference_steps: int = 20
    """DDIM steps per plan (1 .. train_timesteps)."""
    beta_schedule: str = "squaredcos_cap_v2"
    """diffusers beta schedule; Diffuser used the cosine schedule."""
    prediction: str = "sample"
    """What the U-Net predicts: 'sample' (x0, as maze2d's predict_epsilon=False) or 'epsilon'."""
    lr: float = 2e-4
    """Adam learning rate (maze2d: 2e-4)."""
    batch_size: int = 32
    """Trajectories per step (maze2d: 32)."""
    steps: int = 10_000
    """Training steps (the authors trained 2M on a GPU)."""
    ema_decay: float = 0.995
    """Decay of the exponential moving average of the weights that plan (maze2d: 0.995)."""
    grad_clip_norm: float = 1.0
    pos_start: int = 0
    """First observation index of the position the goal is inpainted into."""
    pos_stop: int = 2
    """One past the last such index."""
    log_every: int = 100
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _check(self.horizon >= 2, "horizon", self.horizon, "must be >= 2 (a start and a goal step)")
        _check(self.stride >= 1, "stride", self.stride, "must be >= 1")
        check_unet_shape(self, _check)
        _check(self.train_timesteps >= 1, "train_timesteps", self.train_timesteps, "must be >= 1")
        _check(
            1 <= self.inference_steps <= self.train_timesteps,
            "inference_steps",
            self.inference_steps,
            f"must be in [1, train_timesteps={self.train_timesteps}]",
        )
        _check(self.beta_schedule in BETA_SCHEDULES, "beta_schedule", self.beta_schedule, f"not in {BETA_SCHEDULES}")
        _check(self.prediction in PREDICTIONS, "prediction", self.prediction, f"not in {PREDICTIONS}")
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.steps >= 0, "steps", self.steps, "must be >= 0")
        _check(0 <= self.ema_decay < 1, "ema_decay", self.ema_decay, "must be in [0, 1)")
        _check(self.grad_clip_norm > 0, "grad_clip_norm", self.grad_clip_norm, "must be > 0")
        _check(
            0 <= self.pos_start < self.pos_stop, "pos_stop", self.pos_stop, f"must exceed pos_start={self.pos_start}"
        )
        _check(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require_device("DiffuserConfig", self.device)

    def scheduler_kwargs(self) -> dict[str, Any]:
        return {
            "num_train_timesteps": self.train_timesteps,
            "beta_schedule": self.beta_schedule,
            "clip_sample": True,
            "clip_sample_range": CLIP_RANGE,
            "prediction_type": self.prediction,
        }


class Diffuser(HubComponent):
    """Diffusion over (H, S + A) trajectories, observations beside actions, with its normalisation as buffers."""

    checkpoint_kind = CHECKPOINT_KIND
    traj_min: Tensor
    traj_max: Tensor

    def __init__(self, config: DiffuserConfig, state_dim: int, action_dim: int) -> None:
        super().__init__()
        if state_dim < config.pos_stop or action_dim < 0:
            raise ValueError(
                f"need state_dim >= pos_stop ({config.pos_stop}) and action_dim >= 0; got {state_dim}, {action_dim}"
            )
        self.config, self.state_dim, self.action_dim = config, state_dim, action_dim
        channels = state_dim + action_dim
        self.register_buffer("traj_min", -torch.ones(channels))
        self.register_buffer("traj_max", torch.ones(channels))
        self.model = TemporalUNet(channels, 0, config)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
        self.train_scheduler = DDPMScheduler(**config.scheduler_kwargs())
        self.plan_scheduler = DDIMScheduler(**config.scheduler_kwargs(), timestep_spacing=DDIM_TIMESTEP_SPACING)

    @property
    def device(self) -> torch.device:
        return self.traj_min.device

    @property
    def channels(self) -> int:
        return self.state_dim + self.action_dim

    @property
    def span(self) -> int:
        """Env steps a plan covers: (horizon - 1) * stride + 1."""
        return (self.config.horizon - 1) * self.config.stride + 1

    @property
    def positions(self) -> slice:
        return slice(self.config.pos_start, self.config.pos_stop)

    def set_normalisation(self, steps: Tensor) -> None:
        """Min-max ranges of (N, S + A) steps."""
        self.traj_min.copy_(steps.amin(0))
        self.traj_max.copy_(steps.amax(0))

    def normalise(self, tau: Tensor) -> Tensor:
        span = (self.traj_max - self.traj_min).clamp_min(RANGE_FLOOR)
        return 2 * (tau - self.traj_min) / span - 1

    def unnormalise(self, tau: Tensor) -> Tensor:
        span = (self.traj_max - self.traj_min).clamp_min(RANGE_FLOOR)
        return (tau + 1) / 2 * span + self.traj_min

    def conditions(self, states: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) start observations, (B, P) goal positions -> ((H, C) bool: which entries are inpainted,
        (B, H, C) their normalised values)."""
        batch, horizon = states.shape[0], self.config.horizon
        known = torch.zeros(horizon, self.channels, dtype=torch.bool, device=self.device)
        known[0, : self.state_dim] = True
        known[-1, self.positions] = True
        values = torch.zeros(batch, horizon, self.channels, device=self.device, dtype=states.dtype)
        values[:, 0, : self.state_dim] = states
        values[:, -1, self.positions] = goals
        return known, self.normalise(values)

    def compute_loss(self, trajectories: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Diffusion loss of (B, H, S + A) trajectories in world units, inpainted like the plans."""
        x0 = self.normalise(trajectories)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = torch.randint(self.config.train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        known, _ = self.conditions(trajectories[:, 0, : self.state_dim], trajectories[:, -1, self.positions])
        noisy = torch.where(known, x0, noisy)
        target = x0 if self.config.prediction == "sample" else noise
        empty = x0.new_zeros(x0.shape[0], 0)
        return F.mse_loss(self.model(noisy, t, empty), target)

    @torch.no_grad()
    def plan(self, states: Tensor, goals: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, S) current observations and (B, P) goal positions -> (B, span, S + A) planned trajectories in world
        units, one row per env step from the start state to the goal, sampled with DDIM over the EMA weights (the
        points between a strided plan's are interpolated)."""
        states = states.to(self.device, self.traj_min.dtype)
        goals = goals.to(self.device, self.traj_min.dtype)
        if states.shape[-1] != self.state_dim or goals.shape[-1] != self.config.pos_stop - self.config.pos_start:
            raise ValueError(
                f"states {tuple(states.shape)} and goals {tuple(goals.shape)} do not fit a Diffuser of "
                f"S = {self.state_dim} with positions [{self.config.pos_start}, {self.config.pos_stop})"
            )
        known, values = self.conditions(states, goals)
        x = torch.randn(
            (states.shape[0], self.config.horizon, self.channels), generator=generator, device=self.device,
            dtype=states.dtype,
        )  # fmt: skip
        x = torch.where(known, values, x)
        empty = x.new_zeros(x.shape[0], 0)
        self.plan_scheduler.set_timesteps(self.config.inference_steps)
        for t in self.plan_scheduler.timesteps.tolist():
            t_batch = torch.full((x.shape[0],), t, device=self.device, dtype=torch.long)
            out = self.ema.module(x, t_batch, empty)
            x = self.plan_scheduler.step(out, t, x, generator=generator).prev_sample
            x = torch.where(known, values, x)
        plan = self.unnormalise(x)
        if self.config.stride == 1:
            return plan
        steps = F.interpolate(plan.transpose(1, 2), size=self.span, mode="linear", align_corners=True)
        return steps.transpose(1, 2)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> Diffuser:
        """In eval mode; ``device`` overrides the saved config's device."""
        if device is not None:
            values = {**values, "device": str(device)}
        config = config_from_dict(DiffuserConfig, values, folder / CONFIG_NAME)
        diffuser = cls(config, int(extra["state_dim"]), int(extra["action_dim"]))
        load_module_state(diffuser, state, folder / WEIGHTS_NAME)
        return diffuser.to(resolve_device(config.device)).eval()


# --------------------------------------------------------------------------------------------------------------
# Data and training


@dataclass(frozen=True)
class TrajectoryData:
    """Every episode's (T, S + A) steps joined end to end, and the first step of every H-step window that lies
    inside one episode: the windows are gathered per batch instead of stored (N * H * C floats would not fit)."""

    steps: np.ndarray
    """(sum T, S + A) observations t beside actions t."""
    starts: np.ndarray
    """(N,) index into ``steps`` of every window's first step."""
    state_dim: int

    @classmethod
    def from_episodes(
        cls, episodes: Sequence[Mapping[str, np.ndarray]], horizon: int, stride: int = 1
    ) -> TrajectoryData:
        """Episodes with "observations" (T + 1, S) and "actions" (T, A); windows of ``horizon`` points ``stride``
        steps apart."""
        span = (horizon - 1) * stride + 1
        parts, starts, offset = [], [], 0
        state_dim = 0
        for index, episode in enumerate(episodes):
            obs, act = np.asarray(episode["observations"]), np.asarray(episode["actions"])
            if obs.ndim != 2 or act.ndim != 2 or act.shape[0] + 1 != obs.shape[0]:
                raise ValueError(
                    f"episode {index}: observations {obs.shape} and actions {act.shape} must be (T+1, S) and (T, A)"
                )
            state_dim = obs.shape[1]
            parts.append(np.concatenate([obs[:-1], act], axis=1))
            count = act.shape[0] - span + 1
            if count > 0:
                starts.append(offset + np.arange(count))
            offset += act.shape[0]
        if not starts:
            raise ValueError(f"no episode is long enough for a trajectory of horizon {horizon} (stride {stride})")
        return cls(np.concatenate(parts).astype(np.float32), np.concatenate(starts), state_dim)


@dataclass(frozen=True)
class DiffuserReport:
    losses: tuple[float, ...]
    final_loss: float
    windows: int
    steps: int
    seconds: float


def train_diffuser(
    episodes: Sequence[Mapping[str, np.ndarray]],
    config: DiffuserConfig,
    progress: bool = True,
    settings: LoopSettings | None = None,
) -> tuple[Diffuser, DiffuserReport]:
    """Train Diffuser on every H-step window of the episodes (resumable through ``settings``)."""
    data = TrajectoryData.from_episodes(episodes, config.horizon, config.stride)
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    steps = torch.as_tensor(data.steps, device=device)
    starts = torch.as_tensor(data.starts, device=device)
    offsets = torch.arange(config.horizon, device=device) * config.stride
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Diffuser(config, data.state_dim, steps.shape[1] - data.state_dim)
    model.set_normalisation(steps.cpu())
    model.to(device)
    optimiser = torch.optim.Adam(model.model.parameters(), lr=config.lr)
    model, optimiser = accelerator.prepare(model, optimiser)
    diffuser: Diffuser = accelerator.unwrap_model(model)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    diffuser.train()

    def step(_: int) -> dict[str, Tensor]:
        first = starts[torch.randint(len(starts), (config.batch_size,), generator=gen, device=device)]
        loss = diffuser.compute_loss(steps[first[:, None] + offsets], generator=gen)
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(diffuser.model.parameters(), config.grad_clip_norm)
        optimiser.step()
        diffuser.ema.update_parameters(diffuser.model)
        return {"loss": loss.detach()}

    history = run_loop(
        "diffuser", accelerator, config.steps, step, {"rng": GeneratorState(gen)},
        settings or LoopSettings(progress=progress), log_every=config.log_every,
    )  # fmt: skip
    losses = tuple(h["loss"] for h in history)
    diffuser.eval()
    report = DiffuserReport(
        losses, losses[-1] if losses else math.nan, len(data.starts), config.steps, time.perf_counter() - started
    )
    return diffuser, report


__all__ = ["Diffuser", "DiffuserConfig", "DiffuserReport", "TrajectoryData", "train_diffuser"]
