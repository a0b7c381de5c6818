"""Evaluation statistics (the Wilson interval at the edges and in the middle) and the plan controller's decision
schedule (every H steps; sooner after a fallback, for that env only)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mstt.agent.experiments.controllers import PlanController, wilson_interval


def test_wilson_interval_is_exact_at_the_edges_and_contains_the_rate() -> None:
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi and lo == pytest.approx(0.299, abs=1e-3) and hi == pytest.approx(0.701, abs=1e-3)
    for successes in range(0, 101, 7):
        lo, hi = wilson_interval(successes, 100)
        assert 0.0 <= lo <= successes / 100 <= hi <= 1.0


class RecordingPlanner:
    """Stand-in planner: records which envs (by their first state entry) decide at each call; env 0's decisions fall
    back, every other env's do not. Plans are H steps of constant action, the env's id."""

    horizon, state_dim, action_dim = 4, 2, 1

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, states: torch.Tensor, masks: torch.Tensor, goals: torch.Tensor) -> SimpleNamespace:
        ids = states[:, 0].long()
        self.calls.append(ids.tolist())
        trajectory = torch.zeros(len(ids), self.horizon, self.state_dim + self.action_dim)
        trajectory[..., self.state_dim :] = ids[:, None, None].float()
        return SimpleNamespace(trajectory=trajectory, used_fallback=ids == 0)


class PlanActionTask:
    """Stand-in task whose tracker returns the plan's own action."""

    def track(self, obs: np.ndarray, next_state: np.ndarray, plan_action: np.ndarray) -> np.ndarray:
        return plan_action


@pytest.mark.parametrize("after_fallback", [None, 1])
def test_plan_controller_decides_every_h_steps_and_sooner_after_a_fallback(after_fallback: int | None) -> None:
    planner = RecordingPlanner()
    envs, horizon = 3, RecordingPlanner.horizon
    mask = torch.ones(1, 5, dtype=torch.bool)
    task = PlanActionTask()
    controller = PlanController(task, planner, mask, horizon, torch.device("cpu"), after_fallback)
    obs = {"observation": np.stack([np.arange(envs), np.zeros(envs)], axis=1), "desired_goal": np.zeros((envs, 2))}
    controller.reset(obs)
    for _ in range(2 * horizon):
        actions = controller.act(obs)
        np.testing.assert_array_equal(actions[:, 0], np.arange(envs))  # each env runs its own plan
    if after_fallback is None:  # lockstep: everyone decides at steps 0 and H
        assert planner.calls == [[0, 1, 2], [0, 1, 2]]
    else:  # env 0 fell back, so it decides at every step; the others at steps 0 and H, with it
        assert planner.calls == [[0, 1, 2], [0], [0], [0], [0, 1, 2], [0], [0], [0]]
    assert controller.decisions == sum(len(call) for call in planner.calls)
    assert controller.fallback_rate == pytest.approx(len(planner.calls) / controller.decisions)
