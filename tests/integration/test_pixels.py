"""Pixel-only mode: the agent's state and goal come from rendered frames, the evaluator's from the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mstt.perception
from mstt.agent.experiments import pixels
from mstt.agent.experiments.controllers import make_vector_env
from mstt.agent.experiments.pixels import TRUE_POSITION_KEY, PixelObservation
from mstt.agent.worlds import load_config, make_task

POSITION_TOLERANCE = 0.06
"""World units; one pixel of the 480x480 frame is ~0.03."""


def test_pixel_observations_match_the_simulator(configs: Path) -> None:
    task = make_task(load_config(configs / "maze/t1.yaml"))
    env = PixelObservation(task.make_env(render_mode="rgb_array"), task)
    try:
        obs, info = env.reset(seed=0, options=task.reset_options())
        assert np.linalg.norm(obs["desired_goal"] - env.unwrapped.goal) < POSITION_TOLERANCE
        assert np.all(obs["observation"][2:] == 0.0)  # no velocity from a single frame
        errors, speeds = [], []
        for _ in range(30):
            obs, _, _, _, info = env.step(np.array([0.0, 1.0]))  # up the corridor from the start
            errors.append(np.linalg.norm(obs["achieved_goal"] - info[TRUE_POSITION_KEY]))
            speeds.append(obs["observation"][3])
        assert max(errors) < POSITION_TOLERANCE
        assert np.allclose(obs["observation"][:2], obs["achieved_goal"])
        assert np.mean(speeds[-10:]) > 1.0  # moving up, and the estimate sees it
        assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    finally:
        env.close()


def test_pixel_mode_refuses_an_env_without_frames(configs: Path) -> None:
    task = make_task(load_config(configs / "maze/t1.yaml"))
    env = task.make_env()
    try:
        with pytest.raises(ValueError, match="rgb_array"):
            PixelObservation(env, task)
    finally:
        env.close()
    with pytest.raises(ValueError, match="observation"):
        make_vector_env(task, 1, observation="depth")


def test_a_hidden_marker_is_carried_on_by_its_velocity(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    task = make_task(load_config(configs / "maze/t1.yaml"))
    env = PixelObservation(task.make_env(render_mode="rgb_array"), task)
    try:
        env.reset(seed=0, options=task.reset_options())
        for _ in range(10):
            obs, _, _, _, info = env.step(np.array([0.0, 1.0]))
        seen = obs["achieved_goal"].copy()

        def hidden(*args: object) -> np.ndarray:
            raise mstt.perception.PerceptionError("no agent (green marker) visible in the frame")

        monkeypatch.setattr(pixels, "estimate_position", hidden)
        obs, _, _, _, info = env.step(np.array([0.0, 1.0]))
        assert env.hidden_frames == 1
        assert obs["achieved_goal"][1] > seen[1]  # still moving up, by the last velocity
        assert np.linalg.norm(obs["achieved_goal"] - info[TRUE_POSITION_KEY]) < 3 * POSITION_TOLERANCE
    finally:
        env.close()


def test_the_egocentric_families_are_those_whose_task_renders_its_own_view(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pixels.egocentric_families() == ["house"]  # the maze and Fetch render a top-down or fixed camera only

    class Rover:  # a new family's Task with an egocentric camera
        def render_egocentric(self, env: object) -> np.ndarray:
            return np.zeros((60, 80, 3), dtype=np.uint8)

    monkeypatch.setitem(pixels.FAMILIES, "rover", (Rover, lambda config: None))
    assert pixels.egocentric_families() == ["house", "rover"]
