"""The demo_tracker baseline (no learned part) follows a demo's route with the task's own tracker, in whichever
direction a reversible task's goal needs, and the route-reading pieces of a demo (breaks, reversal)."""

from __future__ import annotations

import numpy as np
import pytest

from mstt.agent.core.demo import Demo
from mstt.agent.experiments.controllers import DemoTracker, make_vector_env, rollout
from mstt.agent.experiments.evaluate import task_demo
from mstt.agent.worlds import load_config, make_task

from repo_paths import CONFIGS


@pytest.mark.parametrize(("variant", "reversible"), [("t1.yaml", True), ("tasks/t1_reverse.yaml", True),
                                                      ("tasks/t1_mid_goal.yaml", True)])  # fmt: skip
def test_follows_the_t1_demo_to_each_goal_without_touching_a_new_wall(variant: str, reversible: bool) -> None:
    task = make_task(load_config(CONFIGS / "maze" / variant))
    demo = Demo.load(CONFIGS / "demos/maze_t1.json")
    venv = make_vector_env(task, 2)
    try:
        tracker = DemoTracker(task, demo.positions, 2, reversible)
        outcomes = rollout(task, venv, tracker, 2, seed=0)
    finally:
        venv.close()
    assert all(o.success and not o.failed for o in outcomes)


def test_without_reversal_the_tracker_cannot_walk_the_route_backwards() -> None:
    task = make_task(load_config(CONFIGS / "maze/tasks/t1_reverse.yaml"))
    tracker = DemoTracker(task, Demo.load(CONFIGS / "demos/maze_t1.json").positions, 2, reversible=False)
    start, goal = np.array([4.5, 0.0]), np.array([-4.5, 0.0])  # the demo's end and start
    forward_only = tracker._path(start, goal)
    tracker.reversible = True
    backwards = tracker._path(start, goal)
    route_length = lambda p: float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())  # noqa: E731
    assert route_length(backwards) > 15 and len(forward_only) <= 3  # forward only: straight at the goal


def test_fetch_tracker_follows_the_zone_demo_over_the_zone() -> None:
    task = make_task(load_config(CONFIGS / "fetch/zone.yaml"))
    venv = make_vector_env(task, 2)
    try:
        tracker = DemoTracker(task, Demo.load(CONFIGS / "demos/fetch_zone.json").positions, 4, True)
        outcomes = rollout(task, venv, tracker, 2, seed=0)
    finally:
        venv.close()
    assert all(o.success and not o.failed for o in outcomes)


def test_demo_pieces_and_reversal() -> None:
    demo = Demo(task="maze", name="x", variant="t1", source="vlm", points=[[0, 0], [1, 0], [2, 0], [3, 0]],
                timestamps=[0.0, 1.0, 2.0, 4.0], breaks=[2])  # fmt: skip
    (a, ta), (b, tb) = demo.pieces()
    assert a.tolist() == [[0, 0], [1, 0]] and b.tolist() == [[2, 0], [3, 0]] and tb.tolist() == [2.0, 4.0]
    back = demo.reversed()
    assert back.points == [[3, 0], [2, 0], [1, 0], [0, 0]] and back.timestamps == [0.0, 2.0, 3.0, 4.0]
    assert back.breaks == [2] and back.reversed() == demo


def test_a_task_reads_the_demo_in_its_direction_of_travel() -> None:
    """A task whose goal lies behind its start along the route reads the demo reversed; one that travels it forward,
    or starts or ends midway, reads it as it is; a task that cannot reverse its motions never reverses it."""
    demo = Demo.load(CONFIGS / "demos/maze_t1.json")
    start, end, middle = demo.positions[0], demo.positions[-1], demo.positions[len(demo.points) // 2]
    assert demo.oriented(start, end) == demo and demo.oriented(middle, end) == demo
    assert demo.oriented(start, middle) == demo
    assert demo.oriented(end, start) == demo.reversed() and demo.oriented(middle, start) == demo.reversed()
    reverse_task = make_task(load_config(CONFIGS / "maze/tasks/t1_reverse.yaml"))
    assert task_demo(demo, reverse_task, end, start) == demo.reversed()
    one_way = make_task(reverse_task.config.model_copy(update={"reversible": False}))
    assert task_demo(demo, one_way, end, start) == demo
