"""The one place an episode is stepped (controllers.play_episodes), shared by `mstt eval` (rollout) and `mstt run`,
and every registered eval method run through it on the tiny config."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mstt.agent.experiments.controllers import PolicyController, Video, make_vector_env, play_episodes, rollout
from mstt.agent.experiments.evaluate import evaluate_transfer
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.methods import METHODS
from mstt.agent.experiments.train import train
from mstt.agent.worlds import load_config, make_task

from repo_paths import CONFIGS

EPISODE_STEPS = 30


@pytest.fixture(scope="module")
def short_t1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rollout") / "t1_short.yaml"
    path.write_text(f"extends: {CONFIGS / 'maze/t1.yaml'}\nepisode_steps: {EPISODE_STEPS}\n")
    return path


def _towards_goal(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return np.clip(goal - obs[:, :2], -1.0, 1.0)


def test_rollout_plays_every_episode_its_full_length_from_seeded_resets(short_t1: Path) -> None:
    task = make_task(load_config(short_t1))
    venv = make_vector_env(task, 2)
    try:
        first = rollout(task, venv, PolicyController(_towards_goal), 3, seed=4, record=True)
        again = rollout(task, venv, PolicyController(_towards_goal), 3, seed=4, record=True)
    finally:
        venv.close()
    assert len(first) == 3  # the second batch of two envs is cut to the one episode asked for
    for a, b in zip(first, again):
        assert a.path is not None and a.path.shape == (EPISODE_STEPS + 1, task.pos_dim)
        assert np.array_equal(a.path, b.path) and a.success == b.success and a.steps_to_goal == b.steps_to_goal
        assert a.steps_to_goal is None or 0 < a.steps_to_goal <= EPISODE_STEPS


def test_play_episodes_counts_the_given_violation_and_records_a_video(short_t1: Path) -> None:
    task = make_task(load_config(short_t1))
    venv = make_vector_env(task, 1, render_mode="rgb_array")
    try:
        obs, info = venv.reset(seed=0, options=task.reset_options())
        video = Video(lambda: task.render_frame(venv.envs[0]), 4, [])
        def everywhere(positions: np.ndarray) -> np.ndarray:
            return np.ones(len(positions), dtype=bool)

        [outcome] = play_episodes(task, venv, PolicyController(_towards_goal), obs, info, violation=everywhere,
                                  videos=[video])  # fmt: skip
    finally:
        venv.close()
    assert outcome.failed and outcome.cost == EPISODE_STEPS
    # the start frame, then one after every 4th step
    assert len(video.frames) == 1 + math.ceil(EPISODE_STEPS / 4) and video.frames[0].ndim == 3


@pytest.fixture(scope="module")
def tiny_run(short_t1: Path) -> tuple[Path, Path]:
    root = short_t1.parent
    experiment = root / "exp.yaml"
    experiment.write_text(
        f"extends: {CONFIGS / 'maze/tiny.yaml'}\nsource: {CONFIGS / 'maze/source.yaml'}\ntargets: [{short_t1}]\n"
        f"demos: {{t1: {CONFIGS / 'demos/maze_t1.json'}}}\ndata: {{root: {root / 'data'}, transitions: 3000}}\n"
    )
    run = root / "run"
    train(load_experiment(experiment), run, progress=False)
    return experiment, run


def test_every_registered_eval_method_gives_sane_outcomes(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    result = evaluate_transfer(load_experiment(experiment), run, episodes=2, json_path=tmp_path / "eval.json",
                               methods=list(METHODS), progress=False)  # fmt: skip
    methods = result["variants"]["t1"]
    assert list(methods) == list(METHODS)
    for name, metrics in methods.items():
        assert 0.0 <= metrics["goal_rate"] <= 1.0, name
        lo, hi = metrics["goal_ci95"]
        assert 0.0 <= lo <= metrics["goal_rate"] <= hi <= 1.0, name
        assert 0.0 <= metrics["failure_rate"] <= 1.0 and 0.0 <= metrics["cost_mean"] <= EPISODE_STEPS, name
        assert (metrics["steps_mean"] is None) == (metrics["goal_rate"] == 0.0), name
        assert metrics["steps_mean"] is None or 0 < metrics["steps_mean"] <= EPISODE_STEPS, name
        assert (metrics["mask_size"] is None) == (METHODS[name].mask == "none"), name
    again = evaluate_transfer(load_experiment(experiment), run, episodes=2, methods=list(METHODS), progress=False)
    assert again["variants"] == result["variants"]  # the same seeds give the same numbers
