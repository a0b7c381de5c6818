"""Goal-conditioned behaviour cloning: the simplest baseline, an MLP from (observation, goal) to
the dataset's action. It has no notion of the changed world, so it shows what transfer costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.layers import mlp
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

KIND = "bc_policy"


@dataclass(frozen=True)
class BCConfig:
    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 3
    """Hidden layers."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 512
    """Transitions per step."""
    steps: int = 5000
    """Training steps."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"BCConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"BCConfig.lr must be > 0, got {self.lr!r}")


class BCPolicy(HubComponent):
    """(B, S) observations and (B, G) goals -> (B, A) actions in [-1, 1]."""

    checkpoint_kind = KIND

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, config: BCConfig, obs_dim: int, goal_dim: int, act_dim: int) -> None:
        super().__init__()
        self.config, self.dims = config, (obs_dim, goal_dim, act_dim)
        self.net = nn.Sequential(*mlp(obs_dim + goal_dim, config.hidden, act_dim, config.layers, nn.ReLU), nn.Tanh())
        self.register_buffer("input_mean", torch.zeros(obs_dim + goal_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + goal_dim))

    def forward(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, goal], dim=-1)
        return self.net((x - self.input_mean) / self.input_std)

    @torch.no_grad()
    def act(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        device = self.input_mean.device
        out = self(
            torch.as_tensor(obs, dtype=torch.float32, device=device),
            torch.as_tensor(goal, dtype=torch.float32, device=device),
        )
        return out.cpu().numpy()

    def checkpoint_extra(self) -> dict[str, Any]:
        obs_dim, goal_dim, act_dim = self.dims
        return {"obs_dim": obs_dim, "goal_dim": goal_dim, "act_dim": act_dim}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, torch.Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> BCPolicy:
        """In eval mode, on ``device`` (default: the CPU; BC is a small MLP fed numpy)."""
        model = cls(config_from_dict(BCConfig, values, folder / CONFIG_NAME),
                    extra["obs_dim"], extra["goal_dim"], extra["act_dim"])  # fmt: skip
        load_module_state(model, state, folder / WEIGHTS_NAME)
        return model.to(device or "cpu").eval()


def train_bc(
    observations: np.ndarray,
    goals: np.ndarray,
    actions: np.ndarray,
    config: BCConfig,
    settings: LoopSettings | None = None,
) -> BCPolicy:
    """Fit (N, S) observations and (N, G) goals to (N, A) actions by mean squared error."""
    accelerator = make_accelerator(config.device)
    torch.manual_seed(config.seed)
    model = BCPolicy(config, observations.shape[1], goals.shape[1], actions.shape[1])
    inputs = torch.as_tensor(np.concatenate([observations, goals], axis=1), dtype=torch.float32)
    model.input_mean.copy_(inputs.mean(0))
    model.input_std.copy_(inputs.std(0).clamp_min(1e-6))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model, optimiser = accelerator.prepare(model, optimiser)
    device = accelerator.device
    obs_t = torch.as_tensor(observations, dtype=torch.float32, device=device)
    goal_t = torch.as_tensor(goals, dtype=torch.float32, device=device)
    act_t = torch.as_tensor(actions, dtype=torch.float32, device=device)
    rng = torch.Generator(device=device).manual_seed(config.seed)

    def step(_: int) -> dict[str, float]:
        idx = torch.randint(len(obs_t), (config.batch_size,), generator=rng, device=device)
        loss = ((model(obs_t[idx], goal_t[idx]) - act_t[idx]) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimiser.step()
        return {"loss": loss.detach()}

    run_loop("bc", accelerator, config.steps, step, {"rng": GeneratorState(rng)}, settings or LoopSettings())
    policy: BCPolicy = accelerator.unwrap_model(model)
    return policy.eval()


__all__ = ["BCConfig", "BCPolicy", "train_bc"]
