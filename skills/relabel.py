"""Relabelling an offline dataset into skill-level transitions for the DDS high level:
every H-step segment becomes (s, z, discounted H-step return, s', done) (arXiv 2503.20176, section 4.2).

A terminal inside a segment ends it early: the return sums rewards up to and including the terminal step, s'
is the state the terminal step reached, done = 1, and ``steps`` (hence the bootstrap discount gamma**steps)
counts only the steps actually taken. Pure numpy, no model: the skill index of each segment is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import cast

import numpy as np
from einops import rearrange
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class SkillTransitions:
    """N skill-level transitions, as arrays."""

    observations: np.ndarray
    """(N, S) state at the segment's start."""
    goals: np.ndarray
    """(N, G) desired goal at the segment's start (G = 0 when the task carries none)."""
    skills: np.ndarray
    """(N,) int64 skill index of the segment."""
    returns: np.ndarray
    """(N,) sum_k gamma**k r_{t+k} over the steps taken."""
    next_observations: np.ndarray
    """(N, S) state after the last step taken."""
    next_goals: np.ndarray
    """(N, G) desired goal there."""
    dones: np.ndarray
    """(N,) float 1.0 when a terminal ended the segment (no bootstrapping), else 0.0."""
    steps: np.ndarray
    """(N,) int64 steps taken: H, or fewer when a terminal came first."""
    discounts: np.ndarray
    """(N,) gamma**steps, the factor on V(s') in the Q target."""

    def __len__(self) -> int:
        return len(self.skills)

    @staticmethod
    def concatenate(parts: Sequence[SkillTransitions]) -> SkillTransitions:
        if not parts:
            raise ValueError("no skill transitions to concatenate: every episode was shorter than H")
        columns = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(SkillTransitions)}
        return SkillTransitions(**columns)


def window_starts(steps: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Start indices of the full H-step windows of an episode of `steps` actions, every `stride` steps."""
    if horizon < 1 or stride < 1:
        raise ValueError(f"horizon and stride must be >= 1, got {horizon}, {stride}")
    return np.arange(0, max(steps - horizon + 1, 0), stride)


def state_action_windows(observations: np.ndarray, actions: np.ndarray, horizon: int, stride: int = 1) -> np.ndarray:
    """(T + 1, S) observations and (T, A) actions -> (W, H, S + A) windows: states t..t+H-1 beside actions t..t+H-1."""
    observations, actions = np.asarray(observations), np.asarray(actions)
    if observations.shape[0] != actions.shape[0] + 1:
        raise ValueError(f"observations {observations.shape} must have one more row than actions {actions.shape}")
    joined = np.concatenate([observations[:-1], actions], axis=1)
    if joined.shape[0] < horizon:
        return np.zeros((0, horizon, joined.shape[1]), dtype=np.float32)
    view = sliding_window_view(joined, horizon, axis=0)[::stride]  # (W, S + A, H)
    return np.ascontiguousarray(rearrange(view, "w c h -> w h c")).astype(np.float32)


def relabel_episode(
    observations: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    skills: np.ndarray,
    horizon: int,
    gamma: float,
    stride: int = 1,
    goals: np.ndarray | None = None,
) -> SkillTransitions:
    """Skill-level transitions of one episode.

    Args:
        observations: (T + 1, S).
        rewards: (T,) reward of each step.
        terminals: (T,) True where step t ended in a terminal state.
        skills: (W,) skill index of each window from ``window_starts(T, horizon, stride)``.
        horizon: H.
        gamma: per-step discount.
        stride: steps between window starts.
        goals: (T + 1, G) desired goal of each observation, or None.
    """
    observations = np.asarray(observations, dtype=np.float32)
    rewards, terminals = np.asarray(rewards, dtype=np.float64), np.asarray(terminals, dtype=bool)
    steps_total = rewards.shape[0]
    if observations.shape[0] != steps_total + 1 or terminals.shape != rewards.shape:
        raise ValueError(
            f"need (T + 1, S) observations, (T,) rewards and terminals; got {observations.shape}, "
            f"{rewards.shape}, {terminals.shape}"
        )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    starts = window_starts(steps_total, horizon, stride)
    skills = np.asarray(skills, dtype=np.int64)
    if skills.shape != starts.shape:
        raise ValueError(f"{len(starts)} windows of H={horizon}, stride={stride} but {skills.shape[0]} skills given")
    if goals is None:
        goals = np.zeros((steps_total + 1, 0), dtype=np.float32)
    goals = np.asarray(goals, dtype=np.float32)

    offsets = np.arange(horizon)
    index = starts[:, None] + offsets  # (W, H) step indices inside each window
    window_terminals = terminals[index] if len(starts) else np.zeros((0, horizon), dtype=bool)
    has_terminal = cast(np.ndarray, window_terminals.any(axis=1))  # (W, H) -> (W,)
    # Steps taken: up to and including the first terminal, else all H.
    taken = np.where(has_terminal, window_terminals.argmax(axis=1) + 1, horizon)
    alive = offsets[None, :] < taken[:, None]
    discount_powers = gamma**offsets
    window_rewards = rewards[index] if len(starts) else np.zeros((0, horizon))
    returns = (window_rewards * discount_powers * alive).sum(axis=1)
    ends = starts + taken
    return SkillTransitions(
        observations=observations[starts],
        goals=goals[starts],
        skills=skills,
        returns=returns.astype(np.float32),
        next_observations=observations[ends],
        next_goals=goals[ends],
        dones=has_terminal.astype(np.float32),
        steps=taken.astype(np.int64),
        discounts=(gamma**taken).astype(np.float32),
    )


def primitive_transitions(episodes: list[dict[str, np.ndarray]], gamma: float) -> dict[str, np.ndarray]:
    """One-step transitions for primitive IQL: the relabelling with H = 1 plus the executed actions."""
    parts = [relabel_episode(e["observations"], e["rewards"], e["terminals"], np.zeros(len(e["actions"]), np.int64),
                             1, gamma, 1, e["goals"]) for e in episodes]  # fmt: skip
    return {
        "observations": np.concatenate([p.observations for p in parts]),
        "goals": np.concatenate([p.goals for p in parts]),
        "actions": np.concatenate([e["actions"] for e in episodes]),
        "returns": np.concatenate([p.returns for p in parts]),
        "discounts": np.concatenate([p.discounts for p in parts]),
        "dones": np.concatenate([p.dones for p in parts]),
        "next_observations": np.concatenate([p.next_observations for p in parts]),
        "next_goals": np.concatenate([p.next_goals for p in parts]),
    }


__all__ = ["SkillTransitions", "primitive_transitions", "relabel_episode", "state_action_windows", "window_starts"]
