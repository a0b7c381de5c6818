"""Diffusion generator D(tau | s, g) over H-step observation-action sub-trajectories: the planner's proposal.
Noise schedules and DDPM/DDIM steps are diffusers' schedulers used standalone; the denoiser is a small 1-D U-Net.

A sub-trajectory tau (H, S + A) is observations t .. t + H - 1 next to actions t .. t + H - 1, i.e. the window the
tokenizer reads (its positions) plus the actions that drive it. The model predicts the noise (epsilon) of tau
normalised to [-1, 1] per dimension (min-max, stored as buffers), conditioned on the normalised start state s
and, in goal-conditioned mode, the goal g. Training uses DDPMScheduler.add_noise; sampling uses DDIMScheduler
with ``inference_steps`` (default 10) or, for the benchmark, DDPMScheduler with all ``train_timesteps``.
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
from diffusers.models.embeddings import Timesteps
from diffusers.optimization import get_scheduler
from einops import rearrange, repeat
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.temporal_unet import TemporalUNet, check_unet_shape
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop
from mstt.skills.validation import require, require_device, resolve_device

CHECKPOINT_KIND = "trajectory_generator"
MAX_DEFAULT_INFERENCE_STEPS = 10
"""The planner samples E * N candidates per decision, so the default DDIM budget stays at <= 10 steps."""
RANGE_FLOOR = 1e-6
"""Smallest (max - min) or std used to normalise a dimension, so constant dimensions do not divide by zero."""
STD_FLOOR = 1e-6
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
CLIP_RANGE = 1.0
"""Normalised trajectories live in [-1, 1]; the schedulers clip their x0 estimate to it."""
DDIM_TIMESTEP_SPACING = "trailing"
"""Few-step DDIM must start at the last training timestep (pure noise); 'leading' would start at t = 90 of 100."""

Tensor = torch.Tensor


def _std(x: Tensor) -> Tensor:
    """(N, D) -> (D,) std floored at STD_FLOOR; ones for a single row, whose std is undefined."""
    return x.std(0).clamp_min(STD_FLOOR) if x.shape[0] > 1 else torch.ones_like(x[0])


_check = partial(require, config="GeneratorConfig")


DENOISERS = ("unet", "mlp")


@dataclass
class GeneratorConfig:
    """Every hyper-parameter of the sub-trajectory diffusion generator."""

    horizon: int = 16
    """H, steps per sub-trajectory; must equal the tokenizer's horizon."""
    denoiser: str = "unet"
    """'unet' (Diffuser-style temporal U-Net) or 'mlp' (flattened trajectory through residual MLP
    blocks: several times cheaper per denoising step on a CPU, where planning latency matters)."""
    mlp_hidden: int = 512
    """Width of the 'mlp' denoiser's blocks."""
    mlp_blocks: int = 3
    """Residual blocks of the 'mlp' denoiser."""
    hidden: int = 64
    """Channels of the U-Net's first level; level i has hidden * 2**i."""
    depth: int = 2
    """Number of down/up-sampling levels of the U-Net (>= 0); H is padded internally to a multiple of 2**depth."""
    kernel_size: int = 5
    """Temporal convolution kernel (odd, >= 1)."""
    norm_groups: int = 8
    """GroupNorm groups; must divide ``hidden``."""
    cond_dim: int = 128
    """Width of the conditioning vector (timestep embedding + start state [+ goal]) fed to every block by FiLM."""
    timestep_embed_dim: int = 64
    """Size of the sinusoidal timestep embedding (even)."""
    train_timesteps: int = 100
    """Diffusion timesteps of training (DDPM) and of the full-step ``sample_ddpm``."""
    inference_steps: int = MAX_DEFAULT_INFERENCE_STEPS
    """DDIM steps of ``sample`` (1 .. train_timesteps)."""
    beta_schedule: str = "squaredcos_cap_v2"
    """diffusers beta schedule: 'linear', 'scaled_linear' or 'squaredcos_cap_v2'."""
    lr: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    lr_schedule: str = "cosine"
    """diffusers.optimization schedule name: 'constant', 'constant_with_warmup', 'linear' or 'cosine'."""
    warmup_steps: int = 500
    """Linear warm-up steps of the LR schedule (<= steps)."""
    grad_clip_norm: float = 1.0
    """Max global gradient norm (> 0)."""
    batch_size: int = 256
    """Sub-trajectories per step."""
    steps: int = 20_000
    """Training steps."""
    goal_conditioned: bool = False
    """Condition on a goal g as well as the start state (train_generator then needs goals)."""
    pin_start: bool = True
    """Overwrite the first observation of every sample with s: the window starts at s by construction, so
    sampling noise there would only blur the position the tokenizer reads first."""
    log_every: int = 100
    """Steps between reads of the loss (each read syncs with the device)."""
    seed: int = 0
    """Seeds initialisation and training batches."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""

    def __post_init__(self) -> None:
        _check(self.horizon >= 1, "horizon", self.horizon, "must be >= 1")
        _check(self.denoiser in DENOISERS, "denoiser", self.denoiser, f"must be one of {DENOISERS}")
        _check(self.mlp_hidden >= 1, "mlp_hidden", self.mlp_hidden, "must be >= 1")
        _check(self.mlp_blocks >= 1, "mlp_blocks", self.mlp_blocks, "must be >= 1")
        check_unet_shape(self, _check)
        _check(self.train_timesteps >= 1, "train_timesteps", self.train_timesteps, "must be >= 1")
        _check(
            1 <= self.inference_steps <= self.train_timesteps,
            "inference_steps",
            self.inference_steps,
            f"must be in [1, train_timesteps={self.train_timesteps}]",
        )
        _check(self.beta_schedule in BETA_SCHEDULES, "beta_schedule", self.beta_schedule, f"not in {BETA_SCHEDULES}")
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"must be one of {LR_SCHEDULES}")
        _check(
            0 <= self.warmup_steps <= max(self.steps, 0),
            "warmup_steps",
            self.warmup_steps,
            f"must be in [0, steps={self.steps}]",
        )
        _check(self.grad_clip_norm > 0, "grad_clip_norm", self.grad_clip_norm, "must be > 0")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.steps >= 0, "steps", self.steps, "must be >= 0")
        _check(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require_device("GeneratorConfig", self.device)

    def scheduler_kwargs(self) -> dict[str, Any]:
        """The arguments DDPMScheduler and DDIMScheduler share, so both use the same noise schedule."""
        return {
            "num_train_timesteps": self.train_timesteps,
            "beta_schedule": self.beta_schedule,
            "clip_sample": True,
            "clip_sample_range": CLIP_RANGE,
            "prediction_type": "epsilon",
        }


# --------------------------------------------------------------------------------------------------------------
# Denoiser


class MLPDenoiser(nn.Module):
    """Residual MLP over the flattened trajectory: (B, H, C) noisy tau, (B,) timesteps, (B, K) condition
    -> (B, H, C) noise. No temporal structure built in, but a handful of large matmuls per step."""

    def __init__(self, channels: int, cond_inputs: int, config: GeneratorConfig) -> None:
        super().__init__()
        width, flat = config.mlp_hidden, config.horizon * channels
        self.time_embed = Timesteps(config.timestep_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.inp = nn.Linear(flat + config.timestep_embed_dim + cond_inputs, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.Mish(), nn.Linear(width, width))
            for _ in range(config.mlp_blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, flat))

    def forward(self, x: Tensor, timesteps: Tensor, cond: Tensor) -> Tensor:
        t = self.time_embed(timesteps).to(x.dtype)
        h = self.inp(torch.cat([rearrange(x, "b h c -> b (h c)"), t, cond], dim=-1))
        for block in self.blocks:
            h = h + block(h)
        return rearrange(self.out(h), "b (h c) -> b h c", h=x.shape[1])


# --------------------------------------------------------------------------------------------------------------
# Generator


class TrajectoryGenerator(HubComponent):
    """Noise-prediction diffusion over (H, S + A) sub-trajectories with its data normalisation as buffers."""

    checkpoint_kind = CHECKPOINT_KIND
    traj_min: torch.Tensor
    traj_max: torch.Tensor
    state_mean: torch.Tensor
    state_std: torch.Tensor
    goal_mean: torch.Tensor
    goal_std: torch.Tensor

    def __init__(self, config: GeneratorConfig, state_dim: int, action_dim: int, goal_dim: int = 0) -> None:
        super().__init__()
        if state_dim < 1 or action_dim < 0 or goal_dim < 0:
            raise ValueError(
                f"need state_dim >= 1, action_dim >= 0, goal_dim >= 0; got {state_dim}, {action_dim}, {goal_dim}"
            )
        if config.goal_conditioned and goal_dim < 1:
            raise ValueError("GeneratorConfig.goal_conditioned is True but goal_dim is 0: pass the goal dimension")
        self.config = config
        self.state_dim, self.action_dim, self.goal_dim = state_dim, action_dim, goal_dim
        channels = state_dim + action_dim
        self.register_buffer("traj_min", -torch.ones(channels))
        self.register_buffer("traj_max", torch.ones(channels))
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("goal_mean", torch.zeros(goal_dim))
        self.register_buffer("goal_std", torch.ones(goal_dim))
        cond_inputs = state_dim + (goal_dim if config.goal_conditioned else 0)
        denoiser = MLPDenoiser if config.denoiser == "mlp" else TemporalUNet
        self.model = denoiser(channels, cond_inputs, config)
        self.train_scheduler = DDPMScheduler(**config.scheduler_kwargs())
        self.ddim_scheduler = DDIMScheduler(**config.scheduler_kwargs(), timestep_spacing=DDIM_TIMESTEP_SPACING)
        self.ddpm_sampler = DDPMScheduler(**config.scheduler_kwargs())

    @property
    def device(self) -> torch.device:
        return self.traj_min.device

    @property
    def goal_conditioned(self) -> bool:
        """Whether ``sample`` reads goals."""
        return self.config.goal_conditioned

    @property
    def channels(self) -> int:
        return self.state_dim + self.action_dim

    # ---- normalisation -------------------------------------------------------------------------------------

    def set_normalisation(self, windows: Tensor, starts: Tensor, goals: Tensor | None = None) -> None:
        """Fit min-max ranges of (N, H, S + A) windows and mean/std of (N, S) starts and (N, G) goals."""
        flat = rearrange(windows, "n h c -> (n h) c")
        self.traj_min.copy_(flat.amin(0))
        self.traj_max.copy_(flat.amax(0))
        self.state_mean.copy_(starts.mean(0))
        self.state_std.copy_(_std(starts))
        if goals is not None and self.goal_dim:
            self.goal_mean.copy_(goals.mean(0))
            self.goal_std.copy_(_std(goals))

    def normalise(self, tau: Tensor) -> Tensor:
        """(..., S + A) world units -> [-1, 1]."""
        span = (self.traj_max - self.traj_min).clamp_min(RANGE_FLOOR)
        return 2 * (tau - self.traj_min) / span - 1

    def unnormalise(self, tau: Tensor) -> Tensor:
        """(..., S + A) in [-1, 1] -> world units."""
        span = (self.traj_max - self.traj_min).clamp_min(RANGE_FLOOR)
        return (tau + 1) / 2 * span + self.traj_min

    def condition(self, states: Tensor, goals: Tensor | None) -> Tensor:
        """(B, S), (B, G) or None -> (B, K) normalised conditioning inputs."""
        if states.shape[-1] != self.state_dim:
            raise ValueError(f"states have {states.shape[-1]} dims, the generator was built for S = {self.state_dim}")
        parts = [(states - self.state_mean) / self.state_std]
        if self.config.goal_conditioned:
            if goals is None:
                raise ValueError("this generator is goal-conditioned: pass goals (B, G)")
            parts.append((goals - self.goal_mean) / self.goal_std)
        return torch.cat(parts, dim=-1)

    # ---- training ------------------------------------------------------------------------------------------

    def compute_loss(
        self, windows: Tensor, starts: Tensor, goals: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Epsilon-prediction MSE of a batch: (B, H, S + A) windows, (B, S) starts, (B, G) goals -> scalar."""
        x0 = self.normalise(windows)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = torch.randint(self.config.train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        return F.mse_loss(self.model(noisy, t, self.condition(starts, goals)), noise)

    # ---- sampling ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        states: Tensor,
        n: int,
        goals: Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """Draw n sub-trajectories per start state with DDIM (deterministic given the initial noise).

        Args:
            states: (B, S) start states.
            n: candidates per state.
            goals: (B, G), required in goal-conditioned mode, ignored otherwise.
            generator: torch RNG on this module's device (seeds the initial noise).
            steps: DDIM steps (default ``config.inference_steps``), 1 .. train_timesteps.

        Returns:
            (B, n, H, S + A) sub-trajectories in world units.
        """
        steps = self.config.inference_steps if steps is None else steps
        if not 1 <= steps <= self.config.train_timesteps:
            raise ValueError(f"steps must be in [1, {self.config.train_timesteps}], got {steps}")
        self.ddim_scheduler.set_timesteps(steps)
        return self._denoise(self.ddim_scheduler, states, n, goals, generator)

    @torch.no_grad()
    def sample_ddpm(
        self, states: Tensor, n: int, goals: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Like ``sample`` but ancestral DDPM over all ``train_timesteps`` steps (the benchmark's reference)."""
        self.ddpm_sampler.set_timesteps(self.config.train_timesteps)
        return self._denoise(self.ddpm_sampler, states, n, goals, generator)

    def _denoise(
        self,
        scheduler: DDIMScheduler | DDPMScheduler,
        states: Tensor,
        n: int,
        goals: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        if n < 1:
            raise ValueError(f"n (candidates per state) must be >= 1, got {n}")
        batch = states.shape[0]
        states = states.to(self.device, self.traj_min.dtype)
        goals = goals.to(self.device, self.traj_min.dtype) if goals is not None else None
        cond = repeat(self.condition(states, goals), "b k -> (b n) k", n=n)
        x = torch.randn(
            (batch * n, self.config.horizon, self.channels), generator=generator, device=self.device, dtype=states.dtype
        )
        for t in scheduler.timesteps.tolist():  # a CPU tensor: iterating it costs no device sync
            t_batch = torch.full((batch * n,), t, device=self.device, dtype=torch.long)
            epsilon = self.model(x, t_batch, cond)
            x = scheduler.step(epsilon, t, x, generator=generator).prev_sample
        tau = rearrange(self.unnormalise(x), "(b n) h c -> b n h c", n=n)
        if self.config.pin_start:
            tau[:, :, 0, : self.state_dim] = states[:, None]
        return tau

    # ---- checkpoints ---------------------------------------------------------------------------------------

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim, "goal_dim": self.goal_dim}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> TrajectoryGenerator:
        """In eval mode; ``device`` overrides the saved config's device."""
        if device is not None:
            values = {**values, "device": str(device)}
        config = config_from_dict(GeneratorConfig, values, folder / CONFIG_NAME)
        generator = cls(config, int(extra["state_dim"]), int(extra["action_dim"]), int(extra["goal_dim"]))
        load_module_state(generator, state, folder / WEIGHTS_NAME)
        return generator.to(resolve_device(config.device)).eval()


# --------------------------------------------------------------------------------------------------------------
# Data and training


def generator_windows(
    episodes: Sequence[dict[str, Any]], horizon: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Cut episodes into training sub-trajectories.

    Args:
        episodes: dicts with "observations" (T+1, S) and "actions" (T, A).
        horizon: H.
        stride: steps between window starts.

    Returns:
        ((N, H, S + A) windows: observations t .. t+H-1 beside actions t .. t+H-1, (N, S) start observations).
    """
    windows, starts = [], []
    for index, episode in enumerate(episodes):
        obs, act = np.asarray(episode["observations"]), np.asarray(episode["actions"])
        if obs.ndim != 2 or act.ndim != 2 or act.shape[0] + 1 != obs.shape[0]:
            raise ValueError(
                f"episode {index}: observations {obs.shape} and actions {act.shape} must be (T+1, S) and (T, A)"
            )
        joined = np.concatenate([obs[:-1], act], axis=1)  # (T, S + A)
        if joined.shape[0] < horizon:
            continue
        view = sliding_window_view(joined, horizon, axis=0)[::stride]  # (W, S + A, H)
        windows.append(rearrange(view, "w c h -> w h c"))
        starts.append(obs[: joined.shape[0] - horizon + 1 : stride])
    if not windows:
        raise ValueError(f"no episode is long enough for a window of horizon {horizon}")
    return np.concatenate(windows).astype(np.float32), np.concatenate(starts).astype(np.float32)


@dataclass(frozen=True)
class GeneratorReport:
    """What one ``train_generator`` run measured."""

    losses: tuple[float, ...]
    """Mean epsilon-MSE over each logging interval."""
    final_loss: float
    """Mean loss of the last logging interval (nan when steps = 0)."""
    steps: int
    """Training steps run."""
    seconds: float
    """Wall time of the run."""


def train_generator(
    windows: np.ndarray | Tensor,
    starts: np.ndarray | Tensor,
    config: GeneratorConfig,
    goals: np.ndarray | Tensor | None = None,
    progress: bool = True,
    settings: LoopSettings | None = None,
) -> tuple[TrajectoryGenerator, GeneratorReport]:
    """Train the sub-trajectory diffusion generator.

    Args:
        windows: (N, H, S + A) sub-trajectories (see ``generator_windows``); H must equal ``config.horizon``.
        starts: (N, S) start state of each window (its first observation).
        config: hyper-parameters.
        goals: (N, G) goal of each window, required iff ``config.goal_conditioned``.
        progress: show a tqdm bar with the loss.
        settings: checkpoint folder and interval of the resumable training loop (default: none).

    Returns:
        (generator in eval mode on the config's device, report).
    """
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    data = torch.as_tensor(np.asarray(windows), dtype=torch.float32, device=device)
    start_states = torch.as_tensor(np.asarray(starts), dtype=torch.float32, device=device)
    if data.ndim != 3 or data.shape[1] != config.horizon:
        raise ValueError(f"windows must be (N, H={config.horizon}, S + A), got {tuple(data.shape)}")
    if start_states.ndim != 2 or start_states.shape[0] != data.shape[0] or start_states.shape[1] > data.shape[2]:
        raise ValueError(
            f"starts must be (N={data.shape[0]}, S) with S <= {data.shape[2]}, got {tuple(start_states.shape)}"
        )
    if config.goal_conditioned != (goals is not None):
        raise ValueError(
            f"GeneratorConfig.goal_conditioned is {config.goal_conditioned} but goals were "
            f"{'given' if goals is not None else 'not given'}; pass goals exactly when goal-conditioned"
        )
    goal_tensor = None
    if goals is not None:
        goal_tensor = torch.as_tensor(np.asarray(goals), dtype=torch.float32, device=device)
        if goal_tensor.ndim != 2 or goal_tensor.shape[0] != data.shape[0]:
            raise ValueError(f"goals must be (N={data.shape[0]}, G), got {tuple(goal_tensor.shape)}")
    state_dim = start_states.shape[1]
    goal_dim = goal_tensor.shape[1] if goal_tensor is not None else 0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = TrajectoryGenerator(config, state_dim, data.shape[2] - state_dim, goal_dim)
    model.set_normalisation(data.cpu(), start_states.cpu(), goal_tensor.cpu() if goal_tensor is not None else None)
    optimiser = torch.optim.AdamW(model.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lr_schedule = get_scheduler(
        config.lr_schedule, optimiser, num_warmup_steps=config.warmup_steps, num_training_steps=max(1, config.steps)
    )
    model, optimiser, lr_schedule = accelerator.prepare(model, optimiser, lr_schedule)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    model.train()

    def step(_: int) -> dict[str, Tensor]:
        idx = torch.randint(data.shape[0], (config.batch_size,), generator=gen, device=device)
        loss = model.compute_loss(
            data[idx], start_states[idx], goal_tensor[idx] if goal_tensor is not None else None, generator=gen
        )
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.model.parameters(), config.grad_clip_norm)
        optimiser.step()
        lr_schedule.step()
        return {"loss": loss.detach()}

    history = run_loop(
        "generator", accelerator, config.steps, step, {"rng": GeneratorState(gen)},
        settings or LoopSettings(progress=progress), log_every=config.log_every,
    )  # fmt: skip
    losses = [h["loss"] for h in history]
    final = losses[-1] if losses else math.nan
    model = accelerator.unwrap_model(model)
    model.eval()
    return model, GeneratorReport(tuple(losses), final, config.steps, time.perf_counter() - started)
