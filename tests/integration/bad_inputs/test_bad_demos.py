"""The demo boundary: a demo is a path, checked segment by segment against the target world, and a file of another
world or format is refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mstt.agent.core.demo import Demo
from mstt.agent.experiments.evaluate import check_demo
from mstt.agent.worlds import load_config, make_task

from repo_paths import CONFIGS


@pytest.fixture(scope="module")
def t1(configs_dir: Path):  # type: ignore[no-untyped-def]
    return make_task(load_config(configs_dir / "maze/t1.yaml"))


@pytest.fixture(scope="module")
def configs_dir() -> Path:
    return CONFIGS


def _maze_demo(points: list[list[float]], variant: str = "t1") -> Demo:
    return Demo(task="maze", name="three-routes", variant=variant, source="vlm", points=points)


def _route_centres(task, every: int) -> list[list[float]]:  # type: ignore[no-untyped-def]
    """Every ``every``-th cell centre of the variant's open route, and its last cell."""
    layout = task.layout
    cells = layout.shortest_path(layout.start, layout.goal)
    return [layout.cell_to_xy(c).tolist() for c in [*cells[::every], cells[-1]]]


def test_straight_line_through_the_walls_is_refused_naming_the_segment(t1) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"segment 0->1 from \[-4.5, 0.0\] to \[4.5, 0.0\] crosses a wall from cell"):
        check_demo(_maze_demo([[-4.5, 0.0], [4.5, 0.0]]), t1, "line.json")


def test_sparse_route_jumping_over_a_blocked_cell_is_refused(t1) -> None:  # type: ignore[no-untyped-def]
    # T1 blocks the middle route at cell (7, 6); jump along row 7 from (7, 5) to (7, 7) across it.
    layout = t1.layout
    a, b = layout.cell_to_xy((7, 5)), layout.cell_to_xy((7, 7))
    with pytest.raises(ValueError, match=r"blocked cell \[7, 6\]"):
        check_demo(_maze_demo([a.tolist(), b.tolist()]), t1, "jump.json")


@pytest.mark.parametrize("every", [1, 2, 3])
def test_routes_through_every_second_or_third_cell_centre_pass(t1, every: int) -> None:  # type: ignore[no-untyped-def]
    warnings = check_demo(_maze_demo(_route_centres(t1, every)), t1, "centres.json")
    if every == 3:  # the straight segments cut the route's corners: accepted, saying where
        assert warnings and all("clips wall cell" in w for w in warnings)
    else:
        assert warnings == ()


def test_a_demo_of_another_variant_is_refused(t1) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="variant 't2'"):
        check_demo(_maze_demo(_route_centres(t1, 1), variant="t2"), t1, "t2.json")


def test_a_new_task_in_a_world_reads_that_worlds_demo(configs_dir: Path) -> None:
    reverse = make_task(load_config(configs_dir / "maze/tasks/t1_reverse.yaml"))
    demo = Demo.load(configs_dir / "demos/maze_t1.json")
    assert check_demo(demo, reverse, "maze_t1.json") == ()


def test_unknown_format_version_is_refused_naming_the_file(tmp_path: Path, configs_dir: Path) -> None:
    data = json.loads((configs_dir / "demos/maze_t1.json").read_text())
    data["format_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"future\.json.*format_version 99"):
        Demo.load(path)


def test_fetch_demo_through_the_zone_is_refused_and_a_graze_warned(configs_dir: Path) -> None:
    zone = make_task(load_config(configs_dir / "fetch/zone.yaml"))
    demo = Demo.load(configs_dir / "demos/fetch_zone.json")
    start, goal = demo.points[0], demo.points[-1]
    straight = demo.model_copy(update={"points": [start, goal], "timestamps": None})
    with pytest.raises(ValueError, match="deep through zone 0"):
        check_demo(straight, zone, "straight.json")
    top = zone.config.zones[0].high[2]
    # over the zone, 5 mm below its top edge: a graze within demo_clip_depth (1 cm)
    grazing = demo.model_copy(
        update={"points": [start, [start[0], start[1], top - 0.005], [goal[0], goal[1], top - 0.005], goal],
                "timestamps": None}
    )  # fmt: skip
    assert any("grazes zone 0 by 0.5 cm" in w for w in check_demo(grazing, zone, "graze.json"))


def test_breaks_exempt_their_segment_from_the_path_check(t1) -> None:  # type: ignore[no-untyped-def]
    centres = _route_centres(t1, 1)
    # cut the route in two and join the pieces across the walls: refused as a path, accepted as a gap
    joined = np.array(centres[:3] + centres[-3:]).tolist()
    with pytest.raises(ValueError):
        check_demo(_maze_demo(joined), t1, "joined.json")
    gapped = Demo(task="maze", name="three-routes", variant="t1", source="vlm", points=joined, breaks=[3])
    assert check_demo(gapped, t1, "gapped.json") == ()
