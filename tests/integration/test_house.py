"""The house task on MiniWorld: every variant loads, the env passes gymnasium's checker, the scripted demo takes the
open route, the expert's data reaches its goals fast and loads back with one-hot actions, the tracker slides past a
doorway's jamb, and the top-down map shows the walls and closed doorways with an exact calibration."""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mstt.agent.core.config import HouseConfig
from mstt.agent.core.house_layout import AGENT_RADIUS
from mstt.agent.worlds import COLLISION_KEY, load_config, make_task
from mstt.agent.worlds.data import collect, dataset_record, load_episodes
from mstt.agent.worlds.house import (
    CLOSED_DOORWAY_RGB,
    GOAL_RADIUS,
    MOVE_FORWARD,
    N_ACTIONS,
    PLAN_LOOKAHEAD,
    TURN_LEFT,
    TURN_RIGHT,
    WALL_RGB,
    HouseTask,
    house_env,
)

VARIANTS = ["source", "blocked", "zone", "holdout"]
ROUTE_POINTS = {"direct": (8.0, 6.0), "north": (8.0, 3.0), "south": (8.0, 9.0)}
"""A point only each route of the three-routes house passes: the living room, the north hall, the south hall."""
OPEN_ROUTE = {"source": "direct", "blocked": "south"}


def _task(configs: Path, variant: str) -> HouseTask:
    task = make_task(load_config(configs / f"house/{variant}.yaml"))
    assert isinstance(task, HouseTask)
    return task


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_loads(configs: Path, variant: str) -> None:
    config = load_config(configs / f"house/{variant}.yaml")
    assert isinstance(config, HouseConfig) and config.variant == variant
    assert config.start is not None and config.goal is not None


@pytest.mark.parametrize("variant", ["source", "zone"])
def test_check_env(configs: Path, variant: str) -> None:
    env = _task(configs, variant).make_env()
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_actions_turn_and_move_the_pose(configs: Path) -> None:
    """Forward moves 0.15 m along the heading; a right turn raises the heading (towards +z) by 15 degrees."""
    task = _task(configs, "source")
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0, options=task.reset_options())
        np.testing.assert_allclose(obs["observation"], [2.5, 5.5, 1.0, 0.0], atol=1e-12)
        obs = env.step(MOVE_FORWARD)[0]
        np.testing.assert_allclose(obs["achieved_goal"], [2.65, 5.5], atol=1e-9)
        obs = env.step(TURN_RIGHT)[0]
        np.testing.assert_allclose(obs["observation"][2:], [np.cos(np.pi / 12), np.sin(np.pi / 12)], atol=1e-9)
        obs = env.step(TURN_LEFT)[0]
        np.testing.assert_allclose(obs["observation"][2:], [1.0, 0.0], atol=1e-9)
    finally:
        env.close()


def test_walls_and_furniture_stop_the_agent(configs: Path) -> None:
    """Walking east along the bedroom beside its doorway stops at the agent's radius from the east wall; walking
    south into the bed stops at the agent's radius from the bed's footprint (its box, not a bounding circle)."""
    task = _task(configs, "source")
    env = task.make_env()
    try:
        env.reset(seed=0, options={"start": np.array([2.0, 4.8]), "heading": 0.0, "goal": np.array([14.5, 6.5])})
        for _ in range(40):
            obs = env.step(MOVE_FORWARD)[0]
        assert obs["achieved_goal"][0] == pytest.approx(4.0 - AGENT_RADIUS, abs=0.16)  # the wall beside the doorway
        env.reset(seed=0, options={"start": np.array([0.9, 5.5]), "heading": np.pi / 2, "goal": np.array([14.5, 6.5])})
        for _ in range(40):
            obs = env.step(MOVE_FORWARD)[0]
        assert obs["achieved_goal"][1] == pytest.approx(6.7 - AGENT_RADIUS, abs=0.16)  # the bed's north face
    finally:
        env.close()


@pytest.mark.parametrize("variant", ["blocked", "holdout"])
def test_bumps_agrees_with_the_simulators_collision_test(configs: Path, variant: str) -> None:
    """The map's test for the agent's body touching a wall, a closed doorway or a box (what dead reckoning and the
    pose filter use) gives the simulator's own answer, HouseEnv.intersect, at random points and at points 1e-6 m
    either side of the agent's radius from every wall's ends."""
    task = _task(configs, variant)
    env = task.make_env()
    try:
        sim = house_env(env)
        rng = np.random.default_rng(0)
        x0, z0, x1, z1 = task.extent
        ends = task.layout.walls.reshape(-1, 2)
        angles = rng.uniform(0, 2 * np.pi, len(ends) * 4)
        ring = np.repeat(ends, 4, axis=0) + (AGENT_RADIUS + rng.choice([-1e-6, 1e-6], len(angles)))[:, None] * (
            np.stack([np.cos(angles), np.sin(angles)], axis=1)
        )
        points = np.concatenate([rng.uniform((x0, z0), (x1, z1), (2000, 2)), ring])
        simulator = [bool(sim.intersect(sim.agent, np.array([x, 0.0, z]), AGENT_RADIUS)) for x, z in points]
        assert task.bumps(points, slack=0.0).tolist() == simulator
        assert 0 < sum(simulator) < len(points)
    finally:
        env.close()


def test_a_step_the_walls_stop_is_reported_as_a_collision(configs: Path) -> None:
    """info[COLLISION_KEY] is True exactly for the forward steps the bed stops; turns and free steps are none."""
    env = _task(configs, "source").make_env()
    try:
        env.reset(seed=0, options={"start": np.array([0.9, 5.5]), "heading": np.pi / 2, "goal": np.array([14.5, 6.5])})
        free = [env.step(MOVE_FORWARD)[4][COLLISION_KEY] for _ in range(3)]
        for _ in range(40):
            env.step(MOVE_FORWARD)
        stopped = env.step(MOVE_FORWARD)[4][COLLISION_KEY]
        turned = env.step(TURN_LEFT)[4][COLLISION_KEY]
    finally:
        env.close()
    assert free == [False, False, False] and stopped is True and turned is False


@pytest.mark.parametrize("variant", ["source", "blocked", "zone", "holdout"])
def test_scripted_demo_reaches_the_goal_and_passes_check_path(configs: Path, variant: str) -> None:
    task = _task(configs, variant)
    demo = task.scripted_demo()
    points = demo.positions
    np.testing.assert_allclose(points[0], task.layout.start)
    assert np.linalg.norm(points[-1] - task.layout.goal) <= GOAL_RADIUS
    check = task.check_path(points, [])
    assert check.refusal is None, check.refusal
    assert not task.violation(points).any() and not task.outside(points).any()


@pytest.mark.parametrize("variant", ["source", "blocked", "zone"])
def test_demo_takes_the_open_route(configs: Path, variant: str) -> None:
    """The source takes the direct route; closed doors and furniture (blocked) or the wet floor (zone) send the demo
    along a hall."""
    points = _task(configs, variant).scripted_demo().positions
    near = {name: bool((np.linalg.norm(points - np.array(p), axis=1) < 1.0).any()) for name, p in ROUTE_POINTS.items()}
    if variant in OPEN_ROUTE:
        assert near == {name: name == OPEN_ROUTE[variant] for name in ROUTE_POINTS}
    else:
        assert not near["direct"] and (near["north"] or near["south"])


def test_check_path_refuses_a_route_through_a_closed_doorway_a_box_and_a_zone(configs: Path) -> None:
    blocked, zone = _task(configs, "blocked"), _task(configs, "zone")
    through_door = blocked.check_path(np.array([[10.0, 6.0], [14.0, 6.0]]), [])
    assert through_door.refusal is not None and "closed doorway 1" in through_door.refusal
    through_box = blocked.check_path(np.array([[7.0, 6.2], [7.0, 4.4]]), [])
    assert through_box.refusal is not None and "box 'sofa'" in through_box.refusal
    through_zone = zone.check_path(np.array([[10.0, 6.0], [13.0, 6.0]]), [])
    assert through_zone.refusal is not None and "zone 'wet_floor'" in through_zone.refusal
    assert blocked.check_path(np.array([[10.0, 6.0], [14.0, 6.0]]), [1]).refusal is None  # a break skips it
    through_wall = blocked.check_path(np.array([[2.0, 5.0], [2.0, 3.0], [3.5, 5.0]]), [])  # out by the door, back not
    assert through_wall.refusal is not None and through_wall.refusal.startswith("segment 1->2")
    assert "crosses the wall" in through_wall.refusal


def test_outside_and_violation(configs: Path) -> None:
    task = _task(configs, "blocked")
    points = np.array([[2.5, 5.5], [0.9, 7.3], [-1.0, 5.0], [11.9, 6.0], [2.5, 9.0]])
    assert task.outside(points).tolist() == [False, True, True, False, False]
    assert task.violation(points).tolist() == [False, False, False, True, False]  # touching the closed door
    zone = _task(configs, "zone")
    assert zone.violation(np.array([[11.0, 6.0], [9.0, 6.0]])).tolist() == [True, False]


def test_track_turns_towards_the_plan_then_moves(configs: Path) -> None:
    task = _task(configs, "source")
    pose = np.array([[2.5, 5.5, 1.0, 0.0]] * 3)
    planned = np.array([[3.0, 5.5, 1.0, 0.0], [2.5, 6.5, 0.0, 1.0], [2.5, 4.5, 0.0, -1.0]])
    actions = task.track(pose, planned, np.zeros((3, 1)))
    assert actions.tolist() == [MOVE_FORWARD, TURN_RIGHT, TURN_LEFT]


def test_track_plan_pursues_the_plan_path_rather_than_its_next_state(configs: Path) -> None:
    """A plan that turns on the spot for four steps and then walks east: tracking its next state turns (the body
    follows the plan's timing), pursuing its path steps forward at once towards the farthest planned point within
    PLAN_LOOKAHEAD; a plan that walks south turns the body towards it."""
    task = _task(configs, "source")
    pose = np.array([[2.5, 5.5, 1.0, 0.0]] * 2)
    turn = np.radians(15.0) * np.arange(1, 5)
    spin = np.column_stack([np.full(4, 2.5), np.full(4, 5.5), np.cos(turn), np.sin(turn)])
    east = np.column_stack([2.5 + 0.15 * np.arange(1, 13), np.full(12, 5.5), np.ones(12), np.zeros(12)])
    south = np.column_stack([np.full(16, 2.5), 5.5 + 0.1 * np.arange(1, 17), np.zeros(16), np.ones(16)])
    plan = np.stack([np.vstack([spin, east]), south])  # (2, 16, 4)
    assert task.track(pose[:1], plan[:1, 0], np.zeros((1, N_ACTIONS))).tolist() == [TURN_RIGHT]
    far_goal = np.array([[9.0, 9.0]] * 2)
    assert task.track_plan(pose, plan, np.zeros(2, dtype=int), far_goal).tolist() == [MOVE_FORWARD, TURN_RIGHT]
    assert PLAN_LOOKAHEAD < np.linalg.norm(east[-1, :2] - pose[0, :2])  # the plan's end lies beyond the lookahead


def test_track_plan_steers_at_the_goal_once_the_plan_passes_it(configs: Path) -> None:
    """A plan walking east past a goal 0.4 m to its north: aiming at the plan's farthest point in reach walks beside
    the goal, outside its radius; once the plan passes within GOAL_RADIUS and the goal is within PLAN_LOOKAHEAD, the
    body turns towards the goal. A goal the plan misses, or one beyond the lookahead, leaves the pursuit as it was."""
    task = _task(configs, "source")
    east = np.column_stack([2.5 + 0.15 * np.arange(1, 17), np.full(16, 5.5), np.ones(16), np.zeros(16)])
    pose, plan = np.array([[2.5, 5.5, 1.0, 0.0]] * 3), np.stack([east] * 3)
    goals = np.array([[3.3, 5.1], [3.3, 4.7], [4.6, 5.1]])  # passed and near; missed by 0.8 m; passed, 2.1 m away
    assert (
        np.linalg.norm(goals[0] - east[:, :2], axis=1).min()
        <= GOAL_RADIUS
        < np.linalg.norm(goals[1] - east[:, :2], axis=1).min()
    )
    assert np.linalg.norm(goals[2] - pose[0, :2]) > PLAN_LOOKAHEAD
    assert task.track_plan(pose, plan, np.zeros(3, dtype=int), goals).tolist() == [
        TURN_LEFT,
        MOVE_FORWARD,
        MOVE_FORWARD,
    ]


def test_track_slides_past_a_doorway_jamb_instead_of_pushing_into_it(configs: Path) -> None:
    """Just through the bedroom's south doorway (x 2.5-3.5 on z = 8) and facing east along the planned direction, a
    forward step would touch the jamb at (3.5, 8): the tracker turns away from it (towards +z) instead; with room to
    spare it steps forward as before."""
    task = _task(configs, "source")
    heading = np.radians(15.0)
    pose = np.array([[3.38, 8.34, np.cos(heading), np.sin(heading)], [3.0, 9.0, np.cos(heading), np.sin(heading)]])
    planned = pose[:, :2] + 0.6 * np.array([np.cos(heading), np.sin(heading)])
    planned = np.column_stack([planned, pose[:, 2:]])
    assert task.bumps(pose[:1, :2] + 0.15 * pose[:1, 2:]).tolist() == [True]
    assert task.track(pose, planned, np.zeros((2, N_ACTIONS))).tolist() == [TURN_RIGHT, MOVE_FORWARD]


def test_expert_collects_episodes_that_reach_goals_fast(configs: Path) -> None:
    task = _task(configs, "source")
    list(task.source_episodes(10, seed=0))  # build the env and load its textures outside the timing
    start = time.perf_counter()
    episodes = list(task.source_episodes(2000, seed=1))
    seconds = time.perf_counter() - start
    print(f"house collection: {2000 / seconds:,.0f} steps/s")
    assert sum(len(e) for e in episodes) == 2000
    assert sum(e.goals_reached for e in episodes) >= 8
    for episode in episodes:
        assert episode.actions.dtype == np.int64 and set(np.unique(episode.actions)) <= {0, 1, 2}
        achieved, desired = episode.observations["achieved_goal"], episode.observations["desired_goal"]
        np.testing.assert_array_equal(episode.rewards, (np.linalg.norm(achieved[1:] - desired[1:], axis=1)
                                                        <= GOAL_RADIUS).astype(float))  # fmt: skip
        assert not task.outside(achieved).any()
        # a new goal each time one is reached: the goal changes exactly where the agent reached it
        changed = np.flatnonzero((desired[1:] != desired[:-1]).any(axis=1))
        assert (np.linalg.norm(achieved[changed] - desired[changed], axis=1) <= GOAL_RADIUS).all()


def test_collected_dataset_loads_back_with_one_hot_actions(configs: Path, tmp_path: Path) -> None:
    """`mstt collect` writes the Discrete(3) actions as integers; load_episodes gives them as (T, 3) float32 one-hot
    rows (what the skills read), the same actions the expert took."""
    task = _task(configs, "source")
    collect(task, 2000, tmp_path, progress=False)
    episodes = load_episodes(task.dataset_id, tmp_path, dataset_record(task, 2000))
    raw = list(task.source_episodes(2000, seed=task.config.dataset.seed))
    assert sum(len(e.actions) for e in episodes) == 2000 and len(episodes) == len(raw)
    for loaded, expert in zip(episodes, raw):
        assert loaded.actions.shape == (len(expert), N_ACTIONS) and loaded.actions.dtype == np.float32
        assert (loaded.actions.sum(axis=1) == 1).all()
        np.testing.assert_array_equal(loaded.actions.argmax(axis=1), expert.actions)
        np.testing.assert_array_equal(loaded.observations, expert.observations["observation"])


def test_top_down_map_shows_walls_and_closed_doorways(configs: Path) -> None:
    """MiniWorld's walls have no thickness; the map draws them: a wall's midpoint is WALL_RGB, the closed doorway
    between the living room and the kitchen is CLOSED_DOORWAY_RGB, and an open doorway's centre is neither."""
    task = _task(configs, "blocked")
    env = task.make_env()
    try:
        env.reset(seed=0, options=task.reset_options())
        frame = task.render_frame(env)
    finally:
        env.close()

    def colour_at(x: float, z: float) -> tuple[int, ...]:
        u, v = task.world_to_pixel(np.array([[x, z]]))[0]
        return tuple(int(c) for c in frame[int(v), int(u)])

    assert colour_at(2.0, 10.0) == WALL_RGB  # the south hall's south wall
    assert colour_at(4.0, 4.8) == WALL_RGB  # between the bedroom and the living room, beside their doorway
    assert colour_at(12.0, 6.0) == CLOSED_DOORWAY_RGB
    assert colour_at(4.0, 6.0) not in (WALL_RGB, CLOSED_DOORWAY_RGB)  # the bedroom's open doorway
    assert colour_at(3.0, 8.0) not in (WALL_RGB, CLOSED_DOORWAY_RGB)
    assert (np.abs(frame.astype(int) - CLOSED_DOORWAY_RGB).max(axis=-1) == 0).sum() >= 3 * 20  # ~1 m long, 3 px wide


def _centroid(frame: np.ndarray, colour: tuple[int, int, int], near: np.ndarray, window: int = 40) -> np.ndarray:
    """The centre of the pixels of ``colour`` within ``window`` pixels of ``near`` (other things share colours)."""
    rgb = frame.astype(int)
    mask = np.abs(rgb - np.array(colour)).max(axis=-1) < 60
    v, u = np.nonzero(mask)
    keep = (np.abs(u + 0.5 - near[0]) < window) & (np.abs(v + 0.5 - near[1]) < window)
    u, v = u[keep], v[keep]
    assert len(u) > 10, f"no {colour} pixels on the map"
    return np.array([u.mean() + 0.5, v.mean() + 0.5])


def test_top_down_map_calibration(configs: Path) -> None:
    """Known world points land on the predicted pixels: the red ball and the green ball (objects), and the purple
    sofa's centre; the round trip pixel -> world is exact."""
    task = _task(configs, "source")
    env = task.make_env()
    try:
        env.reset(seed=0, options=task.reset_options())
        start = time.perf_counter()
        frame = task.render_frame(env)
        print(f"house map render: {1000 * (time.perf_counter() - start):.1f} ms")
        start = time.perf_counter()
        ego = task.render_egocentric(env)
        print(f"house egocentric render: {1000 * (time.perf_counter() - start):.1f} ms")
    finally:
        env.close()
    config = task.config
    assert frame.shape == (config.render.height, config.render.width, 3) and frame.dtype == np.uint8
    assert ego.shape == (config.egocentric.height, config.egocentric.width, 3)
    tolerance = 1.0  # pixel; at 480 px a pixel is about 5 cm here
    for name, colour in (("red_ball", (255, 0, 0)), ("green_ball", (0, 255, 0))):
        predicted = task.world_to_pixel(task.layout.objects[name][None])[0]
        np.testing.assert_allclose(_centroid(frame, colour, predicted), predicted, atol=tolerance, err_msg=name)
    sofa = next(box for box in config.boxes if box.name == "sofa")
    predicted = task.world_to_pixel(np.array([sofa.at]))[0]
    np.testing.assert_allclose(_centroid(frame, (112, 38, 194), predicted), predicted, atol=tolerance)
    corners = task.world_to_pixel(np.array(task.layout.extent).reshape(2, 2))
    assert (corners > 0).all() and (corners < config.render.width).all()
    uv = np.array([[10.5, 300.25], [0.0, 0.0]])
    np.testing.assert_allclose(task.world_to_pixel(task.pixel_to_world(uv)), uv, atol=1e-9)


def test_registered_id_pins_start_goal_and_reports_the_zone(configs: Path) -> None:
    env = gym.make("mstt/MiniWorld-ThreeRoutesHouse-Zone-v0")
    task = _task(configs, "zone")
    try:
        obs, info = env.reset(seed=0)
        np.testing.assert_allclose(obs["achieved_goal"], task.layout.start)
        np.testing.assert_allclose(obs["desired_goal"], task.layout.goal)
        assert (info["cost"], info["failed"]) == (0.0, False)
    finally:
        env.close()
