"""The offline perceiver: reads a rendered top-down frame without any model. Maze: walls are segmented
by colour and read into the cell grid through the calibration, the green and red markers give start
and goal, the maze's own BFS (MazeLayout.shortest_path) plans over what was seen, and the cell centres
become the demo's world points. House: perception.house_map reads the map picture and plans on it.

Its demos carry source "scripted": a deterministic program made them, no person and no learned model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from mstt.agent.core.config import FREE, WALL, MazeConfig
from mstt.agent.core.demo import Demo
from mstt.agent.core.maze_layout import MazeLayout
from mstt.perception.errors import PerceptionError, check_field, is_positive_number
from mstt.perception.geometry import MazeGrid
from mstt.perception.goals import parse_goal
from mstt.perception.house_map import plan_route
from mstt.perception.overlay import draw_demo, overlay_path
from mstt.perception.scene import Scene
from mstt.perception.segmentation import CELL_PATCH, WALL_SHARE, read_walls
from mstt.perception.validation import ENDPOINT_TOLERANCE, route_problems

DEMO_SOURCE = "scripted"


@dataclass(frozen=True, kw_only=True)
class GeometricConfig:
    """How walls are read off the frame, and where overlays go."""

    cell_patch: float = CELL_PATCH
    """Half-size, in cells, of the square sampled around each cell's centre, in (0, 0.5)."""
    wall_share: float = WALL_SHARE
    """A cell is a wall when more than this share of its patch is wall-coloured, in (0, 1)."""
    endpoint_tolerance: float = ENDPOINT_TOLERANCE
    """World units the route's ends may lie from the agent and the target."""
    overlay_dir: str | None = None
    """When set, every demo is drawn over the frame and saved here as a PNG."""

    def __post_init__(self) -> None:
        for name, low, high in (("cell_patch", 0.0, 0.5), ("wall_share", 0.0, 1.0)):
            value = getattr(self, name)
            inside = is_positive_number(value) and low < value < high
            check_field("GeometricConfig", inside, name, value, f"must be in ({low}, {high})")
        tolerance = self.endpoint_tolerance
        check_field("GeometricConfig", is_positive_number(tolerance), "endpoint_tolerance", tolerance, "must be > 0")


def walls_art(walls: np.ndarray, marks: dict[tuple[int, int], str] | None = None) -> str:
    """An occupancy grid as maze art ('#' wall, '.' free, plus single-character marks), for messages."""
    rows = [[WALL if wall else FREE for wall in row] for row in walls]
    for (r, c), char in (marks or {}).items():
        if 0 <= r < len(rows) and 0 <= c < len(rows[0]):
            rows[r][c] = char
    return "\n".join("".join(row) for row in rows)


class GeometricPerceiver:
    """A DemoPerceiver for rendered top-down maze frames and house maps, with no model at all."""

    name = "geometric"
    source = DEMO_SOURCE

    def __init__(self, config: GeometricConfig | None = None) -> None:
        self.config = config or GeometricConfig()
        self.last_overlay: Path | None = None

    def __repr__(self) -> str:
        return f"GeometricPerceiver({self.config!r})"

    def read(self, image: Image.Image | np.ndarray, scene: Scene) -> Scene:
        """The scene as the frame shows it: walls from the pixels, start and goal from the markers."""
        if scene.grid is None:
            raise PerceptionError(
                f"the geometric backend reads top-down maze frames only, not a {scene.task} scene; "
                "use the 'hf' or 'openai' backend"
            )
        rgb = scene.as_frame(image)
        walls = read_walls(rgb, scene.grid, scene.camera, self.config.cell_patch, self.config.wall_share)
        return scene.observe(rgb).replace(grid=MazeGrid(walls=walls, wall_height=scene.grid.wall_height))

    def perceive(self, image: Image.Image | np.ndarray, instruction: str, scene: Scene) -> Demo:
        if scene.task not in _ROUTE_READERS:
            raise PerceptionError(
                f"the geometric backend reads top-down maze frames and house maps only, not a {scene.task} scene; "
                "use the 'hf' or 'openai' backend"
            )
        rgb = scene.as_frame(image)
        points, checked = _ROUTE_READERS[scene.task](self, rgb, instruction, scene)
        demo = Demo(task=scene.task, name=scene.name, variant=scene.variant, source=DEMO_SOURCE, points=points.tolist())
        self.last_overlay = None
        if self.config.overlay_dir is not None:
            path = overlay_path(self.config.overlay_dir, scene.task, scene.variant, self.name, "demo")
            self.last_overlay = draw_demo(rgb, demo, checked, path)
        return demo

    def _maze_points(self, rgb: np.ndarray, instruction: str, scene: Scene) -> tuple[np.ndarray, Scene]:
        """(K, 2) world points of the route on a maze frame (cell centres between start and target), and the
        scene it was checked against."""
        seen = self.read(rgb, scene)
        if seen.start is None:
            raise PerceptionError("no agent (green marker) in the frame and no known start in the scene")
        goal = parse_goal(instruction, seen)
        grid = cast(MazeGrid, seen.grid)  # read() refuses scenes without a grid
        blocked = grid.walls.copy()
        free = np.argwhere(~blocked)
        for box in goal.avoid:
            inside = free[box.contains(grid.centres(free))]
            blocked[inside[:, 0], inside[:, 1]] = True
        start_cell = tuple(int(v) for v in grid.cells_of(seen.start[None])[0])
        goal_cell = goal.cell or tuple(int(v) for v in grid.cells_of(goal.target[None])[0])
        cells = self._route(blocked, start_cell, goal_cell, scene)
        centres = grid.centres(np.array(cells[1:-1])) if len(cells) > 2 else np.zeros((0, 2))
        points = np.vstack([seen.start[None, :2], centres, goal.target[None, :2]])
        # Checked against the scene as given (its walls may come from the config): a misread frame
        # shows up here instead of in a wrong demo.
        checked = scene.replace(start=seen.start)
        problems = route_problems(
            checked.to_pixel(points), checked, goal.target, goal.avoid, self.config.endpoint_tolerance
        )
        if problems:
            raise PerceptionError(
                f"the route planned on the frame of '{scene.variant}' breaks the scene's map; the frame as "
                f"read (S start, G target):\n{walls_art(blocked, {start_cell: 'S', goal_cell: 'G'})}",
                problems,
            )
        return points, checked

    def _house_points(self, rgb: np.ndarray, instruction: str, scene: Scene) -> tuple[np.ndarray, Scene]:
        """(K, 2) floor points of the route on a house map (house_map.plan_route), checked against the scene's own
        walls, doorways, furniture and zones: a misread map shows up here instead of in a wrong demo."""
        goal = parse_goal(instruction, scene)
        points = plan_route(rgb, scene, goal.target, goal.avoid)
        problems = route_problems(
            scene.to_pixel(points), scene, goal.target, goal.avoid, self.config.endpoint_tolerance
        )
        if problems:
            raise PerceptionError(
                f"the route planned on the map of '{scene.variant}' to {goal.label} breaks the scene's map", problems
            )
        return points, scene

    @staticmethod
    def _route(
        blocked: np.ndarray, start: tuple[int, int], goal: tuple[int, int], scene: Scene
    ) -> list[tuple[int, int]]:
        """Cells from start to goal on the perceived grid, by the maze's own BFS."""

        marks = {start: "S", goal: "G"}
        for cell, what in ((start, "agent"), (goal, "target")):
            if not (0 <= cell[0] < blocked.shape[0] and 0 <= cell[1] < blocked.shape[1]) or blocked[cell]:
                raise PerceptionError(
                    f"the {what} is at cell {cell}, which the frame shows as a wall or a region to avoid:\n"
                    f"{walls_art(blocked, marks)}"
                )
        rows = walls_art(blocked).splitlines()
        config = MazeConfig(task="maze", name=scene.name, variant=scene.variant, role="target", rows=rows)
        layout = MazeLayout(config)
        try:
            return layout.shortest_path(start, goal)
        except ValueError:
            raise PerceptionError(
                f"no open route from the agent (cell {start}) to the target (cell {goal}) in the frame as read "
                f"(S start, G target; regions to avoid count as walls):\n{walls_art(blocked, marks)}"
            ) from None


_ROUTE_READERS: dict[str, Callable[[GeometricPerceiver, np.ndarray, str, Scene], tuple[np.ndarray, Scene]]] = {
    "maze": GeometricPerceiver._maze_points,
    "house": GeometricPerceiver._house_points,
}
"""Task family -> how a route is read off its top-down frame: (perceiver, rgb, instruction, scene) -> (K, P) world
points and the scene they were checked against."""
