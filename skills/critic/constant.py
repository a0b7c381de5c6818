"""A critic that values every skill alike (Q = 0): with it the planner keeps any permitted candidate, so an eval method
with this critic (mask_only) shows what the mask achieves without learned values."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class ConstantCritic:
    """Q(s, z, m, g) = 0 for every skill. It knows no goal radius (``goal_radius`` None), so the planner ranks its
    candidates by that constant Q alone, and every skill counts as in the data's support."""

    goal_radius: float | None = None
    discount: float = 1.0
    """Unused: without a goal radius the planner looks no skill ahead."""

    def __init__(self, num_skills: int, state_dim: int = 0) -> None:
        self.num_skills = num_skills
        self.state_dim = state_dim

    def q_values(self, s: Tensor, m: Tensor, g: Tensor | None = None) -> Tensor:
        """(B, S) -> (B, L) zeros on s's device."""
        return torch.zeros(s.shape[0], self.num_skills, device=s.device)

    def state_values(self, s: Tensor, m: Tensor, g: Tensor | None = None) -> Tensor:
        """(B, S) -> (B,) zeros: every state is worth the same."""
        return torch.zeros(s.shape[0], device=s.device)

    def skill_support(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) all True: a constant critic has no prior, so no skill is ranked down."""
        return torch.ones(s.shape[0], self.num_skills, dtype=torch.bool, device=s.device)
