"""The DDS action decoder p(a | s, z): turns a discrete skill back into actions, one step at a time, closed loop.
A diffusion model over the single action (paper default) or, for the ablation, a deterministic MLP.

Diffusion: DDPMScheduler.add_noise for training (epsilon prediction), DDIMScheduler with ``inference_steps``
(paper: 5) for sampling; both diffusers schedulers used standalone with one noise schedule. The denoiser is a
residual MLP over (noisy action, timestep embedding, normalised state, skill code vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import Timesteps
from torch import nn

DECODER_KINDS = ("diffusion", "mlp")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
ACTION_RANGE = 1.0
"""Normalised actions live in [-ACTION_RANGE, ACTION_RANGE]; the schedulers clip their x0 estimate to it."""
DDIM_TIMESTEP_SPACING = "trailing"
"""Few-step DDIM must start from the last training timestep (pure noise), not t = 80 of 100."""
RANGE_FLOOR = 1e-6
STD_FLOOR = 1e-6


@dataclass(frozen=True)
class ActionDecoderConfig:
    """Every hyper-parameter of the action decoder."""

    kind: Literal["diffusion", "mlp"] = "diffusion"
    """'diffusion' (paper) or 'mlp' (deterministic regression, the ablation)."""
    hidden: int = 256
    """Width of the residual blocks."""
    blocks: int = 4
    """Residual MLP blocks (paper: 4)."""
    train_timesteps: int = 100
    """Diffusion timesteps of training."""
    inference_steps: int = 5
    """DDIM steps per action at run time (paper: 5)."""
    beta_schedule: str = "squaredcos_cap_v2"
    """diffusers beta schedule name."""
    timestep_embed_dim: int = 32
    """Size of the sinusoidal timestep embedding (even)."""

    def __post_init__(self) -> None:
        if self.kind not in DECODER_KINDS:
            raise ValueError(f"ActionDecoderConfig.kind must be one of {DECODER_KINDS}, got {self.kind!r}")
        for name in ("hidden", "blocks", "train_timesteps", "inference_steps", "timestep_embed_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ActionDecoderConfig.{name} must be a positive integer, got {value!r}")
        if self.inference_steps > self.train_timesteps:
            raise ValueError(
                f"ActionDecoderConfig.inference_steps={self.inference_steps} must be <= "
                f"train_timesteps={self.train_timesteps}"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"ActionDecoderConfig.beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if self.timestep_embed_dim % 2:
            raise ValueError(f"ActionDecoderConfig.timestep_embed_dim must be even, got {self.timestep_embed_dim}")

    def scheduler_kwargs(self) -> dict[str, Any]:
        """Arguments shared by the DDPM (training) and DDIM (sampling) schedulers: one noise schedule."""
        return {
            "num_train_timesteps": self.train_timesteps,
            "beta_schedule": self.beta_schedule,
            "clip_sample": True,
            "clip_sample_range": ACTION_RANGE,
            "prediction_type": "epsilon",
        }


class ResidualMLP(nn.Module):
    """(B, in_dim) -> (B, out_dim) through `blocks` pre-norm residual blocks of width `hidden`."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, blocks: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.Mish(), nn.Linear(hidden, hidden))
            for _ in range(blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class ActionDecoder(nn.Module):
    """p(a | s, z): (B, S) states and (B, code_dim) skill codes -> (B, A) actions in world units."""

    state_mean: torch.Tensor
    state_std: torch.Tensor
    action_min: torch.Tensor
    action_max: torch.Tensor

    def __init__(self, config: ActionDecoderConfig, state_dim: int, action_dim: int, code_dim: int) -> None:
        super().__init__()
        self.config, self.state_dim, self.action_dim, self.code_dim = config, state_dim, action_dim, code_dim
        cond = state_dim + code_dim
        if config.kind == "diffusion":
            self.time_embed = Timesteps(config.timestep_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
            inputs = action_dim + config.timestep_embed_dim + cond
            self.net = ResidualMLP(inputs, config.hidden, action_dim, config.blocks)
            self.train_scheduler = DDPMScheduler(**config.scheduler_kwargs())
            self.sampler = DDIMScheduler(**config.scheduler_kwargs(), timestep_spacing=DDIM_TIMESTEP_SPACING)
        else:
            self.net = ResidualMLP(cond, config.hidden, action_dim, config.blocks)
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("action_min", -torch.ones(action_dim))
        self.register_buffer("action_max", torch.ones(action_dim))

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    def set_normalisation(self, states: torch.Tensor, actions: torch.Tensor) -> None:
        """Mean/std of (N, S) states, min/max of (N, A) actions."""
        self.state_mean.copy_(states.mean(0))
        self.state_std.copy_(states.std(0).clamp_min(STD_FLOOR) if states.shape[0] > 1 else torch.ones_like(states[0]))
        self.action_min.copy_(actions.amin(0))
        self.action_max.copy_(actions.amax(0))

    def _normalise_action(self, actions: torch.Tensor) -> torch.Tensor:
        span = (self.action_max - self.action_min).clamp_min(RANGE_FLOOR)
        return ACTION_RANGE * (2 * (actions - self.action_min) / span - 1)

    def _unnormalise_action(self, x: torch.Tensor) -> torch.Tensor:
        span = (self.action_max - self.action_min).clamp_min(RANGE_FLOOR)
        return (x / ACTION_RANGE + 1) / 2 * span + self.action_min

    def _condition(self, states: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([(states - self.state_mean) / self.state_std, codes], dim=-1)

    def _epsilon(self, noisy: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = self.time_embed(timesteps).to(noisy.dtype)
        return self.net(torch.cat([noisy, t, cond], dim=-1))

    def compute_loss(
        self, states: torch.Tensor, codes: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B, S) states, (B, code_dim) codes, (B, A) dataset actions -> scalar loss (epsilon MSE or action MSE)."""
        cond = self._condition(states, codes)
        target = self._normalise_action(actions)
        if self.config.kind == "mlp":
            return F.mse_loss(torch.tanh(self.net(cond)) * ACTION_RANGE, target)
        noise = torch.randn(target.shape, generator=generator, device=target.device, dtype=target.dtype)
        t = torch.randint(self.config.train_timesteps, (target.shape[0],), generator=generator, device=target.device)
        noisy = self.train_scheduler.add_noise(target, noise, t)
        return F.mse_loss(self._epsilon(noisy, t, cond), noise)

    @torch.no_grad()
    def sample(
        self, states: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """(B, S) states and (B, code_dim) codes -> (B, A) actions (DDIM from seeded noise, or the MLP's output)."""
        cond = self._condition(states.to(self.state_mean), codes.to(self.state_mean))
        if self.config.kind == "mlp":
            return self._unnormalise_action(torch.tanh(self.net(cond)) * ACTION_RANGE)
        steps = self.config.inference_steps if steps is None else steps
        if not 1 <= steps <= self.config.train_timesteps:
            raise ValueError(f"steps must be in [1, {self.config.train_timesteps}], got {steps}")
        self.sampler.set_timesteps(steps)
        x = torch.randn((cond.shape[0], self.action_dim), generator=generator, device=cond.device, dtype=cond.dtype)
        for t in self.sampler.timesteps.tolist():
            t_batch = torch.full((cond.shape[0],), t, device=cond.device, dtype=torch.long)
            x = self.sampler.step(self._epsilon(x, t_batch, cond), t, x, generator=generator).prev_sample
        return self._unnormalise_action(x.clamp(-ACTION_RANGE, ACTION_RANGE))


__all__ = ["ActionDecoder", "ActionDecoderConfig", "DECODER_KINDS"]

