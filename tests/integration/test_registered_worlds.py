"""Every shipped variant is a gymnasium id whose env passes check_env, is seeded-deterministic and starts where
Task.make_env with the variant's reset options starts; a user's YAML registers with one call."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mstt.agent.core.config import MazeConfig, _read_yaml
from mstt.agent.worlds import SHIPPED_IDS, load_config, make_task, register_variant, variant_id
from mstt.agent.worlds.maze import MazeTask

from repo_paths import CONFIGS

IDS = sorted(SHIPPED_IDS)
MAZE_T1 = "mstt/PointMaze-ThreeRoutes-T1-v0"
FETCH_ZONE = "mstt/FetchReach-Zone-v0"
STEPS = 5
"""Actions stepped per determinism check: enough to move the agent off its start, few enough for Fetch."""


def _close(*envs: gym.Env) -> None:
    for env in envs:
        env.close()


@pytest.fixture
def registry() -> Iterator[None]:
    """Forget the ids a test registers, so that tests do not see each other's variants."""
    before = set(gym.registry)
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]


def test_every_variant_yaml_under_configs_is_registered() -> None:
    variants = {path.resolve() for path in CONFIGS.rglob("*.yaml") if "task" in _read_yaml(path)}
    assert sorted(map(str, variants - set(SHIPPED_IDS.values()))) == [], "variant configs with no gymnasium id"
    assert len(SHIPPED_IDS) == len(variants)


def test_ids_are_named_from_the_family_env_and_the_config_name_and_variant() -> None:
    assert {env_id: variant_id(load_config(path)) for env_id, path in SHIPPED_IDS.items()} == {
        env_id: env_id for env_id in SHIPPED_IDS
    }
    assert {
        MAZE_T1,
        "mstt/PointMaze-ThreeRoutes-Source-v0",
        "mstt/PointMaze-ThreeRoutes-T2Reverse-v0",
        "mstt/PointMaze-Umaze-Source-v0",
        "mstt/FetchReach-Source-v0",
        FETCH_ZONE,
    } <= set(IDS)


@pytest.mark.filterwarnings("ignore:.*(different from the unwrapped|Box observation space).*")
@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_and_actions_give_the_same_observations(env_id: str) -> None:
    first, second = gym.make(env_id), gym.make(env_id)
    try:
        actions = first.action_space
        actions.seed(0)
        plan = [actions.sample() for _ in range(STEPS)]
        obs_a, _ = first.reset(seed=7)
        obs_b, _ = second.reset(seed=7)
        for action in plan:
            for key in obs_a:
                np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
            obs_a, *_ = first.step(action)
            obs_b, *_ = second.step(action)
    finally:
        _close(first, second)


@pytest.mark.parametrize("env_id", IDS)
def test_gym_make_starts_where_the_task_env_starts(env_id: str) -> None:
    task = make_task(load_config(SHIPPED_IDS[env_id]))
    registered, own = gym.make(env_id), task.make_env()
    try:
        obs, _ = registered.reset(seed=3)
        expected, _ = own.reset(seed=3, options=task.reset_options())
        for key in expected:
            np.testing.assert_array_equal(obs[key], expected[key], err_msg=key)
        assert registered.spec is not None and registered.spec.max_episode_steps == task.config.episode_steps
    finally:
        _close(registered, own)


def test_a_maze_id_renders_the_top_down_frame() -> None:
    config = load_config(SHIPPED_IDS[MAZE_T1])
    env = gym.make(MAZE_T1, render_mode="rgb_array")
    try:
        env.reset(seed=0)
        frame = np.asarray(env.render())
    finally:
        env.close()
    assert frame.shape == (config.render.height, config.render.width, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 3  # walls, floor, agent and goal, not a blank frame


def test_reset_pins_the_variants_start_and_goal_and_options_override_them() -> None:
    task = make_task(load_config(SHIPPED_IDS[MAZE_T1]))
    assert isinstance(task, MazeTask) and task.layout.start is not None and task.layout.goal is not None
    env = gym.make(MAZE_T1)
    try:
        obs, _ = env.reset(seed=0)
        assert task.layout.xy_to_cell(obs["achieved_goal"]) == task.layout.start
        assert task.layout.xy_to_cell(obs["desired_goal"]) == task.layout.goal
        other = task.layout.start[0] + 1, task.layout.start[1]
        obs, _ = env.reset(seed=0, options={"goal_cell": np.array(other)})
        assert task.layout.xy_to_cell(obs["achieved_goal"]) == task.layout.start
        assert task.layout.xy_to_cell(obs["desired_goal"]) == other
    finally:
        env.close()


def test_info_reports_cost_and_failure_on_touching_a_blocked_cell() -> None:
    """T1 walls off cell (7, 6); pushed east from the free cell beside it, the agent runs into that wall."""
    blocked, beside = (7, 6), (7, 5)
    task = make_task(load_config(SHIPPED_IDS[MAZE_T1]))
    assert isinstance(task, MazeTask) and blocked in task.layout.blocked
    env = gym.make(MAZE_T1)
    try:
        _, info = env.reset(seed=0, options={"reset_cell": np.array(beside)})
        assert (info["cost"], info["failed"], info["episode_cost"]) == (0.0, False, 0.0)
        costs = []
        for _ in range(40):
            _, _, _, _, info = env.step(np.array([1.0, 0.0]))
            costs.append(info["cost"])
    finally:
        env.close()
    assert max(costs) == 1.0 and info["failed"] and info["episode_cost"] == sum(costs)


def test_a_fetch_zone_id_pins_the_goal_and_reports_the_zone() -> None:
    config = load_config(SHIPPED_IDS[FETCH_ZONE])
    env = gym.make(FETCH_ZONE)
    try:
        obs, info = env.reset(seed=0)
    finally:
        env.close()
    np.testing.assert_array_equal(obs["desired_goal"], config.goal)
    assert {"in_zone", "cost", "failed", "episode_cost"} <= set(info)


@pytest.mark.parametrize(
    ("env_id", "error", "says"),
    [
        ("mstt/PointMaze-NoSuchMaze-v0", gym.error.NameNotFound, "doesn't exist in namespace mstt"),
        ("mstt/FetchReach-zone-v0", gym.error.NameNotFound, "Did you mean: `FetchReach-Zone`"),
        ("mstt/PointMaze-ThreeRoutes-T1-v1", gym.error.VersionNotFound, "`v0`"),
    ],
)
def test_an_unknown_id_gets_gymnasiums_error(env_id: str, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        gym.make(env_id)


def _user_yaml(folder: Path, variant: str = "user_t1") -> Path:
    path = folder / f"{variant}.yaml"
    path.write_text(f"extends: {CONFIGS / 'maze/t1.yaml'}\nvariant: {variant}\nstart: [5, 10]\ngoal: [5, 1]\n")
    return path


@pytest.mark.usefixtures("registry")
def test_register_variant_registers_a_users_yaml(tmp_path: Path) -> None:
    path = _user_yaml(tmp_path)
    env_id = register_variant(path)
    assert env_id == "mstt/PointMaze-ThreeRoutes-UserT1-v0"
    assert register_variant(str(path)) == env_id  # the same file again: the same id, no warning or error
    task = make_task(load_config(path))
    registered, own = gym.make(env_id), task.make_env()
    try:
        obs, _ = registered.reset(seed=1)
        expected, _ = own.reset(seed=1, options=task.reset_options())
    finally:
        _close(registered, own)
    np.testing.assert_array_equal(obs["observation"], expected["observation"])
    assert task.layout.xy_to_cell(obs["desired_goal"]) == (5, 1)


@pytest.mark.usefixtures("registry")
def test_register_variant_takes_a_loaded_config_and_an_id_of_the_users_choice() -> None:
    config = load_config(SHIPPED_IDS[MAZE_T1])
    assert isinstance(config, MazeConfig)
    env_id = register_variant(config.model_copy(update={"episode_steps": 20}), env_id="lab/ShortT1-v3")
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        steps = 0
        truncated = False
        while not truncated:
            *_, truncated, _ = env.step(env.action_space.sample())
            steps += 1
    finally:
        env.close()
    assert steps == 20


@pytest.mark.usefixtures("registry")
def test_register_variant_refuses_a_taken_or_malformed_id(tmp_path: Path) -> None:
    path = _user_yaml(tmp_path)
    with pytest.raises(ValueError, match=rf"{path}: gymnasium id '{MAZE_T1}' is already registered for .*t1.yaml"):
        register_variant(path, env_id=MAZE_T1)
    with pytest.raises(ValueError, match="already registered for gymnasium_robotics"):
        register_variant(path, env_id="PointMaze_UMaze-v3")
    with pytest.raises(ValueError, match="env_id 'two words' is not a gymnasium id"):
        register_variant(path, env_id="two words")


def test_gym_make_with_the_module_prefix_needs_only_gymnasium_imported(tmp_path: Path) -> None:
    """Gymnasium 1.x loads no entry-point plugins; 'module:id' imports mstt.agent.worlds, which registers."""
    script = (
        "import gymnasium as gym\n"
        f"assert {MAZE_T1!r} not in gym.registry\n"
        f"env = gym.make('mstt.agent.worlds:{FETCH_ZONE}')\n"
        "obs, info = env.reset(seed=0)\n"
        "env.close()\n"
        f"assert {MAZE_T1!r} in gym.registry and 'failed' in info\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
