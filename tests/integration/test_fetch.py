"""FetchReach with forbidden zones: real env, zone entry detected, the demo detours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mstt.agent.core.config import Zone
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.fetch import (
    ACTION_STEP,
    DEMO_GOAL_DISTANCE,
    DEMO_HOLD_STEPS,
    FetchTask,
    ReachExpert,
    in_zones,
)


def _task(configs: Path, variant: str) -> FetchTask:
    task = make_task(load_config(configs / f"fetch/{variant}.yaml"))
    assert isinstance(task, FetchTask)
    return task


@pytest.mark.parametrize("variant", ["source", "zone", "zone_random_start"])
def test_check_env(configs: Path, variant: str) -> None:
    env = _task(configs, variant).make_env()
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_fixed_goal_is_pinned(configs: Path) -> None:
    task = _task(configs, "zone")
    env = task.make_env()
    try:
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            np.testing.assert_allclose(obs["desired_goal"], task.config.goal)
    finally:
        env.close()


def test_random_starts_are_drawn_near_home_at_rest_and_cost_no_episode_step(configs: Path) -> None:
    home = _task(configs, "zone").make_env()
    task = _task(configs, "zone_random_start")
    env = task.make_env()
    jitter = task.config.start_jitter
    try:
        origin = home.reset(seed=0)[0]["achieved_goal"]
        starts = []
        for seed in range(8):
            obs, info = env.reset(seed=seed)
            starts.append(obs["achieved_goal"])
            assert np.abs(obs["achieved_goal"] - origin).max() <= jitter + 0.002  # within 2 mm of the drawn point
            assert np.abs(obs["observation"][5:8]).max() < 1e-3  # the gripper is at rest
            assert not info["in_zone"] and not info["failed"] and info["episode_cost"] == 0
            np.testing.assert_allclose(obs["desired_goal"], task.config.goal)
        assert np.linalg.norm(np.diff(starts, axis=0), axis=1).min() > 1e-3  # a start of its own each seed
        np.testing.assert_array_equal(env.reset(seed=3)[0]["achieved_goal"], starts[3])  # the seed decides it
        truncated, steps = False, 0
        while not truncated:
            _, _, _, truncated, _ = env.step(np.zeros(4))
            steps += 1
        assert steps == task.config.episode_steps
    finally:
        env.close()
        home.close()


@pytest.mark.parametrize("variant", ["tasks/zone_reverse", "tasks/zone_mid_start"])
def test_a_named_start_is_where_the_episode_starts_at_rest(configs: Path, variant: str) -> None:
    task = _task(configs, variant)
    env = task.make_env()
    try:
        for seed in range(2):
            obs, info = env.reset(seed=seed)
            np.testing.assert_allclose(obs["achieved_goal"], task.config.start, atol=0.002)
            assert np.abs(obs["observation"][5:8]).max() < 1e-3 and not info["failed"]
            np.testing.assert_allclose(obs["desired_goal"], task.config.goal)
    finally:
        env.close()


def test_straight_motion_enters_the_zone_and_is_reported(configs: Path) -> None:
    task = _task(configs, "zone")
    env = task.make_env()
    expert = ReachExpert(gain=10.0)
    try:
        obs, info = env.reset(seed=0)
        assert not info["in_zone"] and not info["failed"]
        expert.set_waypoints([obs["desired_goal"]])
        entered = []
        for _ in range(task.config.episode_steps):
            obs, _, _, _, info = env.step(expert.act(obs["achieved_goal"]))
            assert info["in_zone"] == in_zones(obs["achieved_goal"], task.config.zones)
            entered.append(info["in_zone"])
        assert info["failed"] and info["episode_cost"] == sum(entered) > 0
    finally:
        env.close()


def test_zone_depth_is_signed_and_its_sign_is_the_closed_box() -> None:
    zone = Zone(low=(1.2, 0.6, 0.4), high=(1.4, 0.9, 0.5))
    points = np.array([
        [1.25, 0.75, 0.45],  # inside: 5 cm from the x=1.2 face, 5 cm from both z faces
        [1.3, 0.9, 0.45],  # on the y=0.9 face
        [1.3, 0.75, 0.53],  # 3 cm above the top
        [1.1, 1.0, 0.45],  # 10 cm out on x and on y: off a vertical edge
    ])  # fmt: skip
    np.testing.assert_allclose(zone.depth(points), [0.05, 0.0, -0.03, -np.hypot(0.1, 0.1)], atol=1e-12)
    rng = np.random.default_rng(0)
    cloud = rng.uniform([1.1, 0.5, 0.3], [1.5, 1.0, 0.6], size=(5000, 3)).round(2)  # many on faces
    closed = np.all((cloud >= zone.low) & (cloud <= zone.high), axis=-1)
    assert closed.any() and not closed.all()
    np.testing.assert_array_equal(zone.depth(cloud) >= 0, closed)
    assert zone.depth(cloud).shape == (5000,) and zone.depth(cloud.reshape(50, 100, 3)).shape == (50, 100)


def test_scripted_demo_detours_and_reaches_goal(configs: Path) -> None:
    task = _task(configs, "zone")
    demo = task.scripted_demo()
    points = demo.positions
    assert not any(in_zones(p, task.config.zones) for p in points)
    assert points[:, 2].max() > task.config.zones[0].high[2]  # it went over the zone
    # it ends at the goal, not at the env's 5 cm success radius, and stays there for DEMO_HOLD_STEPS steps
    to_goal = np.linalg.norm(points - np.asarray(task.config.goal), axis=1)
    assert (to_goal[-(DEMO_HOLD_STEPS + 1) :] < DEMO_GOAL_DISTANCE).all()
    assert (to_goal[: -(DEMO_HOLD_STEPS + 1)] >= DEMO_GOAL_DISTANCE).all()


def test_source_data_has_detours(configs: Path) -> None:
    task = _task(configs, "source")
    episodes = list(task.source_episodes(1000, seed=0))
    assert sum(len(e) for e in episodes) == 1000 and len(episodes) == 20
    lifts = [e.observations["achieved_goal"][:, 2].max() - e.observations["achieved_goal"][0, 2]
             for e in episodes]  # fmt: skip
    assert max(lifts) > 0.1  # some episodes go over a box
    assert sum(e.goals_reached for e in episodes) >= 15


def test_fixed_camera_calibration(configs: Path) -> None:
    """The calibrated Fetch camera predicts where the simulator draws the red goal marker."""
    task = _task(configs, "zone")
    env = task.make_env(render_mode="rgb_array")
    try:
        env.reset(seed=0)
        frame = task.render_frame(env).astype(int)
    finally:
        env.close()
    red = (frame[..., 0] > 150) & (frame[..., 1] < 60) & (frame[..., 2] < 60)
    v, u = np.nonzero(red)
    assert len(u) > 10
    predicted = task.camera.world_to_pixel(np.asarray(task.config.goal)[None])[0]
    np.testing.assert_allclose([u.mean() + 0.5, v.mean() + 0.5], predicted, atol=1.5)


def test_control_dt_matches_the_env(configs: Path) -> None:
    task = _task(configs, "source")
    env = task.make_env()
    try:
        assert task.control_dt == pytest.approx(env.unwrapped.dt)
    finally:
        env.close()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_action_step_is_the_arms_response(configs: Path, axis: int) -> None:
    """A constant action moves the gripper ACTION_STEP metres a step per unit along its axis, nothing across it,
    and it stops within the step after the action ends (no velocity to feed forward)."""
    env = _task(configs, "source").make_env()
    try:
        obs, _ = env.reset(seed=0)
        path = [obs["achieved_goal"]]
        action = np.zeros(4)
        action[axis] = -0.6
        for _ in range(4):
            path.append(env.step(action)[0]["achieved_goal"])
        path.append(env.step(np.zeros(4))[0]["achieved_goal"])
        path.append(env.step(np.zeros(4))[0]["achieved_goal"])
    finally:
        env.close()
    moves = np.diff(np.array(path), axis=0)
    np.testing.assert_allclose(moves[1:4, axis] / -0.6, ACTION_STEP, rtol=0.03)
    assert np.abs(np.delete(moves[:4], axis, axis=1)).max() < 1e-3
    assert np.abs(moves[-1]).max() < 1e-3


def test_tracker_follows_a_curved_plan_within_millimetres(configs: Path) -> None:
    """Climb, then turn forward (a detour's corner), with the plan's actions as noisy as the source data's: the
    gripper stays within 5 mm of every planned position. Feeding those actions forward with a P correction (the
    earlier tracker) strayed up to 1.9 cm here."""
    task = _task(configs, "zone")
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0)
        start = obs["achieved_goal"]
        moves = [np.array([0.0, 0.0, 0.02])] * 5 + [np.array([0.0, 0.03, 0.0])] * 5
        plan = start + np.cumsum(moves, axis=0)
        plan_actions = np.array(moves) / ACTION_STEP + np.random.default_rng(0).normal(0.0, 0.2, (len(moves), 3))
        errors = []
        for target, plan_action in zip(plan, plan_actions):
            state = obs["observation"][None]
            next_state = np.zeros_like(state)
            next_state[0, :3] = target
            action = task.track(state, next_state, np.r_[plan_action, 0.0][None])
            assert action.shape == (1, 4) and np.abs(action).max() <= 1.0
            obs = env.step(action[0])[0]
            errors.append(np.linalg.norm(obs["achieved_goal"] - target))
    finally:
        env.close()
    assert max(errors) < 0.005, np.round(errors, 4)
