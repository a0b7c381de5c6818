"""Outside offline-RL policies (d3rlpy's save_policy TorchScript) evaluated by `mstt offline`: the file is read from
the run folder, fed observation ++ desired goal, and a missing file names itself and the script that makes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mstt.agent.experiments.offline import (
    EXTERNAL_OFFLINE_METHODS,
    OFFLINE_EVAL,
    evaluate_offline,
    load_external_policy,
    load_offline_experiment,
)

from repo_paths import CONFIGS

OBS_DIM, GOAL_DIM = 4, 2


class _TowardsGoal(torch.nn.Module):
    """(B, 6) position, velocity, goal -> (B, 2) clipped goal - position: a known function of the input layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x[:, OBS_DIM:] - x[:, :2], -1.0, 1.0)


def _save_policy(run: Path, method: str) -> Path:
    """A TorchScript policy traced as d3rlpy's save_policy does, at RUN/<method>/policy.pt."""
    path = run / method / "policy.pt"
    path.parent.mkdir(parents=True)
    torch.jit.trace(_TowardsGoal(), torch.rand(1, OBS_DIM + GOAL_DIM)).save(str(path))
    return path


@pytest.mark.parametrize("method", EXTERNAL_OFFLINE_METHODS)
def test_the_policy_reads_observation_then_goal(method: str, tmp_path: Path) -> None:
    _save_policy(tmp_path, method)
    spec = OFFLINE_EVAL[method]
    assert spec.load is not None
    controller = spec.controller(spec.load(tmp_path), 0)
    obs = {"observation": np.array([[0.5, -1.0, 0.1, 0.2], [2.0, 2.0, 0.0, 0.0]], np.float32),
           "desired_goal": np.array([[1.0, -1.5], [0.0, 2.5]], np.float32)}  # fmt: skip
    controller.reset(obs)
    np.testing.assert_allclose(controller.act(obs), [[0.5, -0.5], [-1.0, 0.5]])


def test_mstt_offline_evaluates_an_exported_policy_without_training(tmp_path: Path) -> None:
    experiment = load_offline_experiment(CONFIGS / "offline/tiny.yaml")
    run = tmp_path / "run"
    _save_policy(run, "d3rlpy_iql")
    result = evaluate_offline(experiment, run, episodes=2, methods=["d3rlpy_iql"], progress=False)
    metrics = result["methods"]["d3rlpy_iql"]
    assert result["episodes"] == 2
    assert 0.0 <= metrics["success_rate"] <= 1.0 and metrics["normalised_score"] is not None
    assert sorted(p.name for p in run.iterdir()) == ["d3rlpy_iql"]  # nothing trained into the run


def test_a_missing_policy_names_the_file_and_the_script(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"d3rlpy_bc/policy\.pt.*results/offline-rl-d3rlpy/run_seed\.sh"):
        load_external_policy(tmp_path, "d3rlpy_bc")


def test_a_missing_policy_fails_before_any_training(tmp_path: Path) -> None:
    experiment = load_offline_experiment(CONFIGS / "offline/tiny.yaml")
    with pytest.raises(FileNotFoundError, match="d3rlpy_iql/policy.pt"):
        evaluate_offline(experiment, tmp_path, episodes=1, methods=["iql", "d3rlpy_iql"], progress=False)
    assert not (tmp_path / "iql").exists()
