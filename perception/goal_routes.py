"""Routes of a maze by name: 'the top route' from the agent to a target is the set of simple paths
through free cells that pass above the line joining them, as the picture shows it.

Used by the goal parser to turn 'take the top corridor' into the cells off that route (to avoid).
"""

from __future__ import annotations

from itertools import islice

import networkx as nx
import numpy as np

from mstt.perception.geometry import MazeGrid

Cell = tuple[int, int]
MAX_NAMED_ROUTES = 32
"""More simple paths than this between two cells (open areas) and the maze has no routes to name."""
ROUTE_MIDDLE_BAND = 1.0
"""World units (cells): a route whose cells lie on average within this distance of the line from the
agent to the target is the 'middle' route; farther out it is the top/bottom (or left/right) one."""
ROUTE_NAMES: tuple[str, ...] = ("top", "middle", "bottom", "left", "right")


class RouteError(ValueError):
    """The maze has no routes to name between these cells (none, or too many)."""


def _free_graph(walls: np.ndarray) -> nx.Graph:
    graph = nx.grid_2d_graph(*walls.shape)
    graph.remove_nodes_from([tuple(int(v) for v in cell) for cell in np.argwhere(walls)])
    return graph


def simple_routes(grid: MazeGrid, start: Cell, target: Cell) -> list[list[Cell]]:
    """Every simple path of free cells from start to target; RouteError when none or too many."""
    graph = _free_graph(grid.walls)
    if start not in graph or target not in graph:
        raise RouteError(f"cell {start} or {target} is a wall or outside the maze")
    paths = list(islice(nx.all_simple_paths(graph, start, target), MAX_NAMED_ROUTES + 1))
    if not paths:
        raise RouteError(f"no open route from cell {start} to cell {target}")
    if len(paths) > MAX_NAMED_ROUTES:
        raise RouteError(
            f"more than {MAX_NAMED_ROUTES} routes lead from cell {start} to cell {target} (open areas): they have "
            "no names; name cells or regions to avoid instead"
        )
    return paths


def route_name(
    grid: MazeGrid, path: list[Cell], right: tuple[int, float], up: tuple[int, float]
) -> str:
    """'top'/'middle'/'bottom' for a path between ends side by side in the picture, else
    'left'/'middle'/'right'. right, up: (world axis, sign) of image-right and image-up."""
    centres = grid.centres(np.array(path))
    ends = centres[[0, -1]]
    span = ends[1] - ends[0]
    side_by_side = abs(span[right[0]]) >= abs(span[up[0]])
    axis, sign = up if side_by_side else right
    offset = sign * float(centres[:, axis].mean() - ends[:, axis].mean())
    if abs(offset) <= ROUTE_MIDDLE_BAND:
        return "middle"
    if side_by_side:
        return "top" if offset > 0 else "bottom"
    return "right" if offset > 0 else "left"


def named_routes(
    grid: MazeGrid, start: Cell, target: Cell, right: tuple[int, float], up: tuple[int, float]
) -> dict[str, list[list[Cell]]]:
    """The simple paths from start to target, grouped by name."""
    routes: dict[str, list[list[Cell]]] = {}
    for path in simple_routes(grid, start, target):
        routes.setdefault(route_name(grid, path, right, up), []).append(path)
    return routes
