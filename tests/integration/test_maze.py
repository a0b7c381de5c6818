"""The maze task: real PointMaze envs per variant, walls that block, the expert, the camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mstt.agent.core.maze_layout import MazeLayout
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.maze import GOAL_CAPTURE, GOAL_RADIUS, POINT_DT, MazeTask

VARIANTS = ["source", "t1", "t2", "t3", "umaze", "medium", "large"]
# Cells that only the top, middle and bottom routes of the three-routes maze pass through.
ROUTE_CELLS = {"top": (1, 5), "middle": (7, 6), "bottom": (9, 5)}
OPEN_ROUTE = {"t1": "top", "t2": "middle", "t3": "bottom"}


def _task(configs: Path, variant: str) -> MazeTask:
    task = make_task(load_config(configs / f"maze/{variant}.yaml"))
    assert isinstance(task, MazeTask)
    return task


@pytest.mark.parametrize("variant", VARIANTS)
def test_check_env(configs: Path, variant: str) -> None:
    env = _task(configs, variant).make_env()
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_layout_conversions_match_gymnasium(configs: Path) -> None:
    task = _task(configs, "t1")
    env = task.make_env()
    try:
        maze = env.unwrapped.maze
        for cell in task.layout.free_cells:
            np.testing.assert_allclose(task.layout.cell_to_xy(cell), maze.cell_rowcol_to_xy(cell))
            xy = maze.cell_rowcol_to_xy(cell) + 0.3
            assert task.layout.xy_to_cell(xy) == tuple(maze.cell_xy_to_rowcol(xy))
        # Blocked cells are real walls in the simulator, not a bookkeeping flag.
        assert all(maze.maze_map[r][c] == 1 for r, c in task.layout.blocked)
    finally:
        env.close()


def test_source_has_three_long_routes(configs: Path) -> None:
    """Each target leaves exactly one route; the expert needs >= 150 steps on each."""
    routes = set()
    for variant, route in OPEN_ROUTE.items():
        task = _task(configs, variant)
        path = task.layout.shortest_path(task.layout.start, task.layout.goal)
        assert ROUTE_CELLS[route] in path
        assert not any(ROUTE_CELLS[r] in path for r in ROUTE_CELLS if r != route)
        routes.add(tuple(path))
        demo = task.scripted_demo()
        assert len(demo.points) >= 150
        assert np.linalg.norm(demo.positions[-1] - task.layout.cell_to_xy(task.layout.goal)) < 1.0
    assert len(routes) == 3
    source = _task(configs, "source").layout
    assert all(not source.walls[cell] for cell in ROUTE_CELLS.values())


@pytest.mark.parametrize("variant", ["t1", "t2", "t3"])
def test_demo_follows_the_open_route(configs: Path, variant: str) -> None:
    task = _task(configs, variant)
    cells = {task.layout.xy_to_cell(p) for p in task.scripted_demo().positions}
    assert ROUTE_CELLS[OPEN_ROUTE[variant]] in cells
    assert not cells & set(task.layout.blocked)


@pytest.mark.parametrize("variant", ["t1", "t2", "t3"])
def test_off_route_is_everything_but_the_open_route(configs: Path, variant: str) -> None:
    task = _task(configs, variant)
    layout = task.layout
    centres = {name: layout.cell_to_xy(cell) for name, cell in ROUTE_CELLS.items()}
    for name, xy in centres.items():
        assert task.off_route(xy[None])[0] == (name != OPEN_ROUTE[variant])
    ends = np.stack([layout.cell_to_xy(layout.start), layout.cell_to_xy(layout.goal)])
    assert not task.off_route(ends).any()
    assert not task.off_route(np.asarray(task.scripted_demo().positions)).any()  # a perfect demo stays on it


@pytest.mark.parametrize("variant", ["source", "t1"])
def test_blocked_corridor_stops_a_point_driven_into_it(configs: Path, variant: str) -> None:
    """Push east along the middle route's lower corridor (row 7) from cell (7, 5)."""
    task = _task(configs, variant)
    env = task.make_env()
    try:
        env.reset(seed=0, options={"reset_cell": np.array([7, 5]), "goal_cell": np.array([5, 10])})
        xs = []
        for _ in range(150):
            obs, *_ = env.step(np.array([1.0, 0.0]))
            xs.append(obs["achieved_goal"][0])
    finally:
        env.close()
    wall_left_edge = task.layout.cell_to_xy((7, 6))[0] - 0.5
    if variant == "t1":  # (7, 6) is blocked in T1
        assert max(xs) < wall_left_edge
    else:
        assert max(xs) > wall_left_edge + 1.0


def test_expert_reaches_goals_with_noise(configs: Path) -> None:
    task = _task(configs, "source")
    episodes = list(task.source_episodes(3000, seed=1))
    assert sum(len(e) for e in episodes) == 3000
    assert sum(e.goals_reached for e in episodes) >= 5
    for episode in episodes:
        rewards = episode.rewards
        dist = np.linalg.norm(
            episode.observations["achieved_goal"][1:] - episode.observations["desired_goal"][1:],
            axis=1,
        )
        # The env's own sparse reward: 1 inside the success radius.
        np.testing.assert_array_equal(rewards, (dist <= GOAL_RADIUS).astype(float))


def _green_centroid(frame: np.ndarray) -> np.ndarray:
    rgb = frame.astype(int)
    mask = (rgb[..., 1] > rgb[..., 0] + 40) & (rgb[..., 1] > rgb[..., 2] + 40)
    v, u = np.nonzero(mask)
    assert len(u) > 20, "agent marker not found in the frame"
    return np.array([u.mean() + 0.5, v.mean() + 0.5])


def test_camera_round_trip(configs: Path) -> None:
    """The calibration predicts where the simulator draws the agent, within one pixel."""
    task = _task(configs, "source")
    env = task.make_env(render_mode="rgb_array")
    try:
        for cell in [(1, 1), (5, 5), (9, 10), (3, 3)]:
            obs, _ = env.reset(
                seed=0, options={"reset_cell": np.array(cell), "goal_cell": np.array([5, 10])}
            )
            xy = obs["achieved_goal"]
            predicted = task.world_to_pixel(xy)[0]
            np.testing.assert_allclose(_green_centroid(task.render_frame(env)), predicted, atol=1.0)
            np.testing.assert_allclose(task.pixel_to_world(predicted[None])[0], xy, atol=1e-9)
    finally:
        env.close()
    # The whole maze is in the frame.
    corners = [task.layout.cell_to_xy(c) for c in [(0, 0), (10, 11)]]
    uv = task.world_to_pixel(np.array(corners))
    assert np.all(uv > 0) and np.all(uv < task.config.render.width)


def test_layout_refuses_bad_blocked_cells(configs: Path) -> None:
    config = load_config(configs / "maze/source.yaml").model_copy(update={"blocked": [(5, 1)]})
    with pytest.raises(ValueError, match=r"blocked\[0\]"):
        MazeLayout(config)


def test_control_dt_matches_the_env(configs: Path) -> None:
    task = _task(configs, "source")
    env = task.make_env()
    try:
        assert task.control_dt == env.unwrapped.point_env.dt
    finally:
        env.close()


def test_outside_marks_points_off_the_map_and_in_walls(configs) -> None:
    task = make_task(load_config(configs / "maze/t1.yaml"))
    layout = task.layout
    free, wall, blocked = layout.cell_to_xy((5, 1)), layout.cell_to_xy((0, 0)), layout.cell_to_xy((7, 6))
    off_map = np.array([layout.n_cols, 0.0])
    assert task.outside(np.stack([free, wall, blocked, off_map])).tolist() == [False, True, True, True]
    source = make_task(load_config(configs / "maze/source.yaml"))
    assert not source.outside(blocked[None]).any()  # the blocked cell is free in the source world


def _plan_along_row(obs: np.ndarray, y: float, horizon: int = 16, speed: float = 0.04) -> np.ndarray:
    """(1, H, 4) a plan heading east along the line at height y, at `speed` units per step, from the body's x."""
    steps = np.arange(horizon)
    return np.stack(
        [obs[0] + speed * steps, np.full(horizon, y), np.full(horizon, speed / POINT_DT), np.zeros(horizon)], axis=1
    )[None]


@pytest.mark.parametrize("capture", [False, True])
def test_track_plan_brakes_onto_a_goal_the_plan_passes_just_outside_its_radius(configs: Path, capture: bool) -> None:
    """In T1's top corridor a plan runs east 0.3 below the middle; the goal lies 0.2 above it, so the plan passes it
    0.5 away, outside GOAL_RADIUS. Tracking the plan's next state walks past; track_plan stops on the goal."""
    task = _task(configs, "t1")
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0, options={"reset_cell": np.array([1, 2]), "goal_cell": np.array([1, 5])})
        corridor_y = task.layout.cell_to_xy((1, 5))[1]
        goal = task.layout.cell_to_xy((1, 5)) + np.array([0.0, 0.2])
        env.unwrapped.goal = goal.copy()  # PointMaze draws the goal off the cell's centre; put it where the test says
        state, reached = obs["observation"], False
        for _ in range(150):
            plan = _plan_along_row(state, corridor_y - 0.3)
            k = np.zeros(1, dtype=int)
            if capture:
                action = task.track_plan(state[None], plan, k, goal[None])[0]
            else:
                action = task.track(state[None], plan[:, 1], plan[:, 0, :2])[0]
            obs, reward, *_ = env.step(action)
            state = obs["observation"]
            reached = reached or reward > 0
    finally:
        env.close()
    assert reached == capture
    if capture:
        assert np.linalg.norm(state[:2] - goal) < GOAL_RADIUS


def test_track_plan_follows_the_plan_away_from_the_goal(configs: Path) -> None:
    """Beyond GOAL_CAPTURE the plan's tracker is unchanged; within it, the body heads for the goal and brakes."""
    task = _task(configs, "t1")
    state = np.array([[0.0, 4.0, 1.0, 0.0], [0.0, 4.0, 1.0, 0.0]])
    plan = np.concatenate([_plan_along_row(state[0], 3.7), _plan_along_row(state[1], 3.7)])
    k = np.zeros(2, dtype=int)
    goals = np.array([[0.0, 4.0 + GOAL_CAPTURE + 0.1], [0.0, 4.0 + GOAL_CAPTURE - 0.1]])
    actions = task.track_plan(state, plan, k, goals)
    np.testing.assert_array_equal(actions[0], task.track(state[:1], plan[:1, 1], plan[:1, 0, :2])[0])
    assert actions[0, 0] > 0  # the plan drives east
    assert actions[1, 1] > 0.9 and actions[1, 0] < 0  # up to the goal, braking the eastward speed
