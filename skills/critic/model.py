"""The critic's networks: Q(s, z, m, g) for all L skills in one forward (an ensemble, min over members), and the skill
prior p(z | s) beside them, with the input normalisation both read; saved and loaded as one safetensors checkpoint."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.critic.bellman import TERMINATION_REWARD
from mstt.skills.critic.configuration import CriticConfig
from mstt.skills.layers import mlp
from mstt.skills.prior import prior_support
from mstt.skills.validation import resolve_device

CHECKPOINT_KIND = "masked_critic"
STD_FLOOR = 1e-6
"""Smallest std used to normalise a feature, so constant features do not divide by zero."""

Tensor = torch.Tensor


class MaskedCritic(HubComponent):
    """Q(s, z, m, g) for all L skills in one forward, an ensemble of ``n_critics`` nets, plus the prior p(z | s).

    Input of each Q net: concat(normalised s (S), normalised g (G, goal-conditioned mode only), m as a float
    L-vector); output (L,) Q values. Normalisation statistics are buffers, saved with the weights.
    """

    checkpoint_kind = CHECKPOINT_KIND

    state_mean: torch.Tensor
    state_std: torch.Tensor
    goal_mean: torch.Tensor
    goal_std: torch.Tensor

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
            mlp(in_dim, config.hidden, num_skills, config.layers, nn.Mish, config.layer_norm)
            for _ in range(config.n_critics)
        )
        self.prior_net = mlp(state_dim, config.hidden, num_skills, config.layers, nn.Mish, config.layer_norm)

    @property
    def discount(self) -> float:
        """Skill-level discount gamma ** H."""
        return self.config.gamma**self.horizon

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    @property
    def goal_radius(self) -> float:
        """A window whose positions come this close to g reaches it (the reward's radius)."""
        return self.config.goal_radius

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
        allowed = m.to(torch.bool) & self.skill_support(s)
        best = self.q_values(s, m, g).masked_fill(~allowed, -math.inf).amax(dim=-1)
        return torch.where(allowed.any(dim=-1), best, torch.full_like(best, TERMINATION_REWARD))

    def prior_logits(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) logits of the skill prior p(z | s)."""
        return self.prior_net((s - self.state_mean) / self.state_std)

    def skill_prior(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) probabilities p(z | s)."""
        return self.prior_logits(s).softmax(dim=-1)

    def skill_support(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) bool: the skills the data takes at s, p(z | s) above the config's prior threshold (the set
        the Bellman max runs over)."""
        return prior_support(self.skill_prior(s), self.config.prior_threshold, self.config.prior_threshold_mode)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim, "goal_dim": self.goal_dim, "num_skills": self.num_skills,
                "horizon": self.horizon}  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> MaskedCritic:
        """In eval mode; ``device`` overrides the saved config's device (e.g. a GPU-trained critic on the CPU)."""
        if device is not None:
            values = {**values, "device": str(device)}
        config = config_from_dict(CriticConfig, values, folder / CONFIG_NAME)
        dims = (int(extra[key]) for key in ("state_dim", "goal_dim", "num_skills", "horizon"))
        critic = cls(config, *dims)
        load_module_state(critic, state, folder / WEIGHTS_NAME)
        return critic.to(resolve_device(config.device)).eval()

