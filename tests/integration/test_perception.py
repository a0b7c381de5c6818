"""Perception without a model: the geometric backend on real rendered T1-T3 frames, walls and markers
read off pixels, route validation, overlays, natural-language goals, and pixel-only state estimation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mstt.agent.core.camera import FreeCamera
from mstt.agent.core.demo import Demo
from mstt.agent.experiments.evaluate import start_frame
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.maze import MazeTask
from mstt.perception import (
    DemoPerceiver,
    GoalParseError,
    PerceptionError,
    PixelStateEstimator,
    Scene,
    available_perceivers,
    draw_demo,
    estimate_position,
    make_perceiver,
    parse_goal,
)
from mstt.perception.prompts import load_prompt
from mstt.perception.validation import route_problems

from repo_paths import CONFIGS

# Cells that only the top, middle and bottom routes of the three-routes maze pass through.
ROUTE_CELLS = {"top": (1, 5), "middle": (7, 6), "bottom": (9, 5)}
OPEN_ROUTE = {"t1": "top", "t2": "middle", "t3": "bottom"}
POSITION_TOLERANCE = 0.05
"""World units: pixel-only positions must be this close to the simulator's."""


@pytest.fixture(scope="module")
def worlds() -> dict[str, tuple[MazeTask, Scene, np.ndarray]]:
    """Task, scene and the rendered start frame of the source maze and T1-T3."""
    out = {}
    for variant in ("source", "t1", "t2", "t3"):
        task = make_task(load_config(CONFIGS / f"maze/{variant}.yaml"))
        out[variant] = (task, Scene.from_task(task), start_frame(task))
    return out


def _cells_along(positions: np.ndarray, task: MazeTask, step: float = 0.05) -> set[tuple[int, int]]:
    """Every cell the polyline through `positions` touches, sampled every `step` world units."""
    cells = set()
    for a, b in zip(positions[:-1], positions[1:]):
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
        for t in np.linspace(0.0, 1.0, n):
            cells.add(task.layout.xy_to_cell(a + t * (b - a)))
    return cells


# ----------------------------------------------------------------------------------------------------------
# The geometric backend on real frames


@pytest.mark.parametrize("variant", ["t1", "t2", "t3"])
def test_geometric_demo_follows_the_open_route(worlds: dict, variant: str, tmp_path: Path) -> None:
    task, scene, frame = worlds[variant]
    perceiver = make_perceiver("geometric", {"overlay_dir": str(tmp_path)})
    demo = perceiver.perceive(frame, "go to the red ball", scene)

    assert isinstance(demo, Demo) and demo.task == "maze" and demo.variant == variant and demo.source == "scripted"
    cells = _cells_along(demo.positions, task)
    route = OPEN_ROUTE[variant]
    assert ROUTE_CELLS[route] in cells
    assert not cells & {c for r, c in ROUTE_CELLS.items() if r != route}
    assert not cells & set(task.layout.blocked)
    assert not any(task.layout.walls[c] for c in cells)
    # The shipped scripted demo of this variant takes the same route and has the same ends.
    shipped = Demo.load(CONFIGS / f"demos/maze_{variant}.json")
    shipped_cells = {task.layout.xy_to_cell(p) for p in shipped.positions}
    assert {r for r, c in ROUTE_CELLS.items() if c in shipped_cells} == {route}
    assert np.linalg.norm(demo.positions[0] - shipped.positions[0]) < POSITION_TOLERANCE
    assert np.linalg.norm(demo.positions[-1] - shipped.positions[-1]) < 0.5  # the scripted expert stops within reach
    # The overlay was written: the frame with the route drawn on it.
    assert perceiver.last_overlay is not None and perceiver.last_overlay.parent == tmp_path
    overlay = np.asarray(Image.open(perceiver.last_overlay).convert("RGB"))
    assert overlay.shape == frame.shape and np.any(overlay != frame)


@pytest.mark.parametrize("variant", ["source", "t1", "t2", "t3"])
def test_walls_read_off_the_frame_match_the_config(worlds: dict, variant: str) -> None:
    task, scene, frame = worlds[variant]
    np.testing.assert_array_equal(scene.with_walls_from_image(frame).grid.walls, task.layout.walls)


def test_geometric_follows_instructions_on_the_source_maze(worlds: dict) -> None:
    task, scene, frame = worlds["source"]
    perceiver = make_perceiver("geometric")
    detour = perceiver.perceive(frame, "go to the red ball, avoiding cell (1, 5) and cell (7, 6)", scene)
    assert ROUTE_CELLS["bottom"] in _cells_along(detour.positions, task)
    room = perceiver.perceive(frame, "reach the top-right room", scene)
    goal = parse_goal("reach the top-right room", scene)
    assert task.layout.xy_to_cell(room.positions[-1]) == goal.cell
    assert goal.region.contains(room.positions[-1:])[0]
    cell = perceiver.perceive(frame, "go to cell (9, 1)", scene)
    np.testing.assert_allclose(cell.positions[-1], task.layout.cell_to_xy((9, 1)))


def test_geometric_errors_are_clear(worlds: dict, configs: Path) -> None:
    task, scene, frame = worlds["t1"]
    perceiver = make_perceiver("geometric")
    with pytest.raises(PerceptionError, match="no open route") as info:
        perceiver.perceive(frame, "go to the red ball without entering cell (1, 5)", scene)
    assert "S" in str(info.value) and "G" in str(info.value)  # the map as read is shown
    with pytest.raises(PerceptionError, match="calibrated for 480x480"):
        perceiver.perceive(frame[:240], "go to the red ball", scene)
    with pytest.raises(GoalParseError, match="no target"):
        perceiver.perceive(frame, "sing a song", scene)
    fetch = make_task(load_config(configs / "fetch/zone.yaml"))
    camera = FreeCamera((1.3, 0.75, 0.4), 1.2, 90.0, -90.0, 45.0, 480, 480)
    with pytest.raises(PerceptionError, match="maze frames and house maps only"):
        perceiver.perceive(frame, "touch the target", Scene.from_task(fetch, camera=camera))


def test_a_misread_frame_is_caught_by_the_scene_map(worlds: dict) -> None:
    """The source frame planned on (its shortest route is the top one), checked against T2's map, where
    the top route is walled off at (1, 5)."""
    _, t2_scene, _ = worlds["t2"]
    _, _, source_frame = worlds["source"]
    with pytest.raises(PerceptionError, match=r"breaks the scene's map") as info:
        make_perceiver("geometric").perceive(source_frame, "go to the red ball", t2_scene)
    assert any("wall (cell (1, 5))" in reason for reason in info.value.reasons)


def test_draw_demo_writes_a_png(worlds: dict, tmp_path: Path) -> None:
    task, scene, frame = worlds["t2"]
    demo = Demo.load(CONFIGS / "demos/maze_t2.json")
    path = draw_demo(frame, demo, scene, tmp_path / "sub" / "t2.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == frame.shape
    # Route pixels are drawn where the calibration puts the demo's middle point.
    u, v = scene.to_pixel(demo.positions[len(demo.points) // 2][None])[0].astype(int)
    assert np.any(image[v - 2 : v + 3, u - 2 : u + 3] != frame[v - 2 : v + 3, u - 2 : u + 3])
    small = draw_demo(frame[::4, ::4], demo, scene.replace(camera=_scaled(task.camera, 4)), tmp_path / "small.png")
    assert Image.open(small).size == (480, 480)  # small pictures are scaled up to stay legible


def _scaled(camera: FreeCamera, factor: int) -> FreeCamera:
    return FreeCamera(camera.lookat, camera.distance, camera.azimuth, camera.elevation, camera.fovy,
                      camera.width // factor, camera.height // factor)


# ----------------------------------------------------------------------------------------------------------
# Scene geometry and validation


def test_scene_grid_matches_the_layout(worlds: dict) -> None:
    task, scene, _ = worlds["t1"]
    cells = np.array(task.layout.free_cells)
    np.testing.assert_allclose(scene.grid.centres(cells), [task.layout.cell_to_xy(tuple(c)) for c in cells])
    points = scene.grid.centres(cells) + 0.3
    assert [tuple(c) for c in scene.grid.cells_of(points)] == [task.layout.xy_to_cell(p) for p in points]
    assert scene.grid.in_wall(np.array([[100.0, 0.0]]))[0]  # outside the maze counts as a wall
    uv = np.array([[10.0, 20.0], [300.5, 111.25]])
    np.testing.assert_allclose(scene.to_pixel(scene.to_world(uv)), uv)


def test_route_problems(worlds: dict) -> None:
    task, scene, frame = worlds["t1"]
    scene = scene.observe(frame)
    path = task.layout.shortest_path(task.layout.start, task.layout.goal)
    good = scene.to_pixel(np.array([task.layout.cell_to_xy(c) for c in path]))
    assert route_problems(good, scene) == []
    straight = scene.to_pixel(np.array([scene.start, scene.goal]))
    assert any("passes inside a wall" in p for p in route_problems(straight, scene))
    wall_point = np.vstack([good[:3], scene.to_pixel(task.layout.cell_to_xy((7, 6))[None]), good[3:]])
    assert any("point 3" in p and "cell (7, 6)" in p for p in route_problems(wall_point, scene))
    assert "outside the 480x480 image" in route_problems(good + [500.0, 0.0], scene)[0]
    assert any("starts" in p for p in route_problems(good[3:], scene))
    assert route_problems(good[:1], scene) == ["a route needs at least 2 points (start and end), got 1"]
    bottom = scene.region("bottom-right")
    assert any("region to avoid (bottom-right)" in p for p in route_problems(good, scene, avoid=[bottom]))
    # A region target: any end inside the region will do, an end outside it will not.
    room = scene.region("top-right")
    to_room = scene.to_pixel(np.array([task.layout.cell_to_xy(c) for c in path[:12]]))  # ends in cell (1, 8)
    assert route_problems(to_room, scene, target_region=room) == []
    assert "outside the top-right region" in route_problems(to_room[:6], scene, target_region=room)[0]


# ----------------------------------------------------------------------------------------------------------
# Natural-language goals


def test_goal_parsing_cases(worlds: dict, configs: Path) -> None:
    task, scene, _ = worlds["t1"]
    red = parse_goal("Go to the red ball", scene)
    assert red.kind == "marker" and red.cell == task.layout.goal
    np.testing.assert_allclose(red.target, scene.goal)

    room = parse_goal("reach the top-right room", scene)
    assert room.kind == "region" and room.region.name == "top-right"
    row, col = room.cell
    assert row < task.layout.n_rows / 2 and col >= task.layout.n_cols / 2 and not task.layout.walls[room.cell]

    cell = parse_goal("go to cell (5, 10)", scene)
    assert cell.kind == "cell" and cell.cell == (5, 10)
    np.testing.assert_allclose(cell.target, task.layout.cell_to_xy((5, 10)))
    assert parse_goal("Go to cell 9, 1 please", scene).cell == (9, 1)
    assert parse_goal("navigate to position (4.5, 0.2)", scene).cell == (5, 10)

    avoid = parse_goal("avoid cell (7, 6) and cell (9, 5), then go to the goal", scene)
    assert [b.name for b in avoid.avoid] == ["cell (7, 6)", "cell (9, 5)"]

    fetch_task = make_task(load_config(configs / "fetch/zone.yaml"))
    camera = FreeCamera((1.325, 0.75, 0.4), 1.2, 90.0, -90.0, 45.0, 160, 160)  # image right = +x
    table = Scene.from_task(fetch_task, camera=camera)
    touch = parse_goal("touch the target without entering the left half of the table", table)
    assert touch.kind == "marker" and touch.target.tolist() == list(fetch_task.config.goal)
    (left,) = touch.avoid
    assert left.name == "left" and left.low[0] == table.extent.low[0]
    assert left.high[0] == pytest.approx((table.extent.low[0] + table.extent.high[0]) / 2)
    assert left.low[2] == table.extent.low[2] and left.high[2] == table.extent.high[2]  # every height


@pytest.mark.parametrize(
    ("instruction", "match"),
    [
        ("purple monkey dishwasher", r"no target found .* \(understood: nothing\)"),
        ("go to the red ball and then to cell (1, 1)", r"ambiguous: it names 2 targets .*red ball.*cell \(1, 1\)"),
        ("go to cell (0, 0)", r"cell \(0, 0\) is a wall"),
        ("go to cell (50, 3)", r"outside the 11x12 maze"),
        ("go to the green ball", r"the agent itself"),
        ("go to the red ball without entering the blue", r"no region or cell to avoid in 'the blue'"),
        (
            "reach the red ball avoiding the left half",
            r"the agent already stands in what the instruction says to avoid \(left\)",
        ),
        ("", r"empty"),
    ],
)
def test_unusable_instructions_raise_with_what_was_understood(worlds: dict, instruction: str, match: str) -> None:
    _, scene, frame = worlds["t1"]
    with pytest.raises(GoalParseError, match=match):
        parse_goal(instruction, scene.observe(frame))


_T1_SCENE = Scene.from_task(make_task(load_config(CONFIGS / "maze/t1.yaml")))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_goal_parser_never_fails_otherwise(text: str) -> None:
    """Any string either parses or raises GoalParseError, never anything else."""
    scene = _T1_SCENE
    try:
        goal = parse_goal(text, scene)
    except GoalParseError as error:
        assert isinstance(error.understood, list)
    else:
        assert len(goal.position) == 2


# ----------------------------------------------------------------------------------------------------------
# Pixel-only state estimation


def test_position_from_pixels(worlds: dict) -> None:
    task, scene, _ = worlds["source"]
    env = task.make_env(render_mode="rgb_array")
    try:
        for seed, cell in enumerate([(1, 1), (5, 5), (9, 10), (3, 3), (7, 8), (1, 10)]):
            obs, _ = env.reset(seed=seed, options={"reset_cell": np.array(cell), "goal_cell": np.array([5, 10])})
            error = np.linalg.norm(estimate_position(task.render_frame(env), scene) - obs["achieved_goal"])
            assert error < POSITION_TOLERANCE, (cell, error)
    finally:
        env.close()
    with pytest.raises(PerceptionError, match="no agent"):
        estimate_position(np.zeros((480, 480, 3), dtype=np.uint8), scene)


def test_state_estimator_tracks_position_and_velocity(worlds: dict) -> None:
    """Frames 5 steps apart while the agent runs up a corridor and turns along a wall."""
    task, scene, _ = worlds["t1"]
    env = task.make_env(render_mode="rgb_array")
    steps = 5
    dt = float(env.unwrapped.point_env.dt)
    estimator = PixelStateEstimator(scene, dt=steps * dt, lag=dt)
    try:
        obs, _ = env.reset(seed=0, options=task.reset_options())
        assert np.all(estimator.update(task.render_frame(env))[2:] == 0.0)
        previous = obs["achieved_goal"].copy()
        position_errors, velocity_errors = [], []
        for i in range(24):
            action = np.array([0.0, 1.0]) if i < 16 else np.array([0.5, -1.0])
            for _ in range(steps):
                obs, *_ = env.step(action)
            state = estimator.update(task.render_frame(env))
            position_errors.append(np.linalg.norm(state[:2] - obs["achieved_goal"]))
            velocity_errors.append(np.linalg.norm(state[2:] - (obs["achieved_goal"] - previous) / (steps * dt)))
            previous = obs["achieved_goal"].copy()
        estimator.reset()
        assert np.all(estimator.update(task.render_frame(env))[2:] == 0.0)
    finally:
        env.close()
    assert max(position_errors) < POSITION_TOLERANCE
    # One pixel (~0.03 units) of centre error over 0.05 s is ~0.6 units/s; the agent moves at up to ~5.
    assert np.mean(velocity_errors) < 0.4 and max(velocity_errors) < 1.5
    with pytest.raises(ValueError, match="dt"):
        PixelStateEstimator(scene, dt=0.0)


# ----------------------------------------------------------------------------------------------------------
# Factory and prompts


def test_factory(tmp_path: Path) -> None:
    assert available_perceivers() == ["geometric", "hf", "openai"]
    perceiver = make_perceiver("geometric", {"cell_patch": 0.25})
    assert isinstance(perceiver, DemoPerceiver) and perceiver.config.cell_patch == 0.25
    with pytest.raises(ValueError, match=r"unknown perception backend 'clip'; known: \['geometric', 'hf', 'openai'\]"):
        make_perceiver("clip")
    with pytest.raises(ValueError, match=r"GeometricConfig: unknown field\(s\) \['patch'\]"):
        make_perceiver("geometric", {"patch": 0.2})
    with pytest.raises(ValueError, match=r"OpenAIConfig: backend 'openai' needs field\(s\) \['model'\]"):
        make_perceiver("openai", {})
    with pytest.raises(ValueError, match=r"GeometricConfig.cell_patch must be in \(0.0, 0.5\), got 0.7"):
        make_perceiver("geometric", {"cell_patch": 0.7})


def test_prompts_load_by_name(tmp_path: Path) -> None:
    prompt = load_prompt("route")
    assert {"image_url", "instruction", "frame_description", "format_instructions"} <= set(prompt.input_variables)
    with pytest.raises(FileNotFoundError, match=r"no prompt 'nope' .* known: \[.*'route'.*\]"):
        load_prompt("nope")
    (tmp_path / "mine.txt").write_text("[user]\n<image>\nWhere is {thing}?\n")
    (message,) = load_prompt("mine", tmp_path).format_messages(image_url="data:image/png;base64,AA", thing="it")
    assert message.content == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        {"type": "text", "text": "Where is it?"},
    ]
