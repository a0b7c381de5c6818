"""The grid of a maze variant: walls, start, goal, cell <-> world coordinates and shortest paths.

Pure geometry from the config's maze art, shared by the maze world and the perception backends.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from gymnasium_robotics.envs.maze import maps

from mstt.agent.core.config import FREE, GOAL, MAZE_CHARS, START, WALL, MazeConfig

WALL_HEIGHT = 0.4
"""PointMaze's maze_height (the wall boxes' height in metres at scaling 1)."""
AGENT_Z = 0.0
"""Height of the point agent's centre: pixel <-> world conversions for the agent use this plane."""
_BUILTIN_MAPS = {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))

Cell = tuple[int, int]


def builtin_rows(name: str) -> list[str]:
    """A gymnasium-robotics standard map as maze art ('#' wall, '.' free)."""
    return ["".join(WALL if v == 1 else FREE for v in row) for row in _BUILTIN_MAPS[name]]


class MazeLayout:
    """The grid of one variant: walls (blocked cells included), start, goal, shortest paths."""

    def __init__(self, config: MazeConfig) -> None:
        rows = config.rows if config.rows is not None else builtin_rows(config.builtin or "")
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise ValueError(f"field 'rows': rows have different lengths {sorted(widths)}")
        for r, row in enumerate(rows):
            bad = set(row) - MAZE_CHARS
            if bad:
                raise ValueError(
                    f"field 'rows[{r}]' = {row!r}: unknown cell value(s) {sorted(bad)}; "
                    f"use '#' wall, '.' free, 'S' start, 'G' goal"
                )
        self.n_rows, self.n_cols = len(rows), widths.pop()
        self.walls = np.array([[ch == WALL for ch in row] for row in rows], dtype=bool)
        self.start = self._marker(rows, START, config.start, "start")
        self.goal = self._marker(rows, GOAL, config.goal, "goal")
        for i, cell in enumerate(config.blocked):
            if not self.in_bounds(cell):
                raise ValueError(f"field 'blocked[{i}]' = {list(cell)} is outside the maze")
            if cell in (self.start, self.goal):
                raise ValueError(f"field 'blocked[{i}]' = {list(cell)} blocks the start or goal")
            self.walls[cell] = True
        self.blocked = tuple(tuple(c) for c in config.blocked)
        self._distance_cache: dict[Cell, np.ndarray] = {}

    def _marker(self, rows: list[str], char: str, given: Cell | None, field: str) -> Cell | None:
        found = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == char]
        if len(found) > 1:
            raise ValueError(f"field 'rows': {len(found)} '{char}' markers, expected at most one")
        picked = given if given is not None else (found[0] if found else None)
        if picked is None:
            return None
        cell: Cell = (int(picked[0]), int(picked[1]))
        if not self.in_bounds(cell):
            raise ValueError(f"field '{field}' = {list(cell)} is outside the maze")
        if self.walls[cell]:
            raise ValueError(f"field '{field}' = {list(cell)} is inside a wall")
        return cell

    def in_bounds(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.n_rows and 0 <= cell[1] < self.n_cols

    @property
    def free_cells(self) -> list[Cell]:
        return [(int(r), int(c)) for r, c in np.argwhere(~self.walls)]

    def maze_map(self) -> list[list[int]]:
        """The env's maze_map: 1 wall, 0 free (start and goal are given through reset options)."""
        return self.walls.astype(int).tolist()

    # Same formulas as gymnasium_robotics' Maze.cell_rowcol_to_xy / cell_xy_to_rowcol at scaling 1
    # (checked against them in the tests); here they work without building an env.
    def cell_to_xy(self, cell: Cell) -> np.ndarray:
        return np.array([cell[1] + 0.5 - self.n_cols / 2, self.n_rows / 2 - cell[0] - 0.5])

    def xy_to_cell(self, xy: np.ndarray) -> Cell:
        return (math.floor(self.n_rows / 2 - xy[1]), math.floor(xy[0] + self.n_cols / 2))

    def distances_to(self, goal: Cell) -> np.ndarray:
        """BFS step counts from every cell to `goal` (-1 where unreachable); cached per goal."""
        if goal not in self._distance_cache:
            dist = np.full(self.walls.shape, -1, dtype=np.int64)
            dist[goal] = 0
            queue = deque([goal])
            while queue:
                r, c = queue.popleft()
                for dr, dc in _NEIGHBOURS:
                    nxt = (r + dr, c + dc)
                    if self.in_bounds(nxt) and not self.walls[nxt] and dist[nxt] < 0:
                        dist[nxt] = dist[r, c] + 1
                        queue.append(nxt)
            self._distance_cache[goal] = dist
        return self._distance_cache[goal]

    def shortest_path(self, start: Cell, goal: Cell) -> list[Cell]:
        """Cells from start to goal inclusive; raises ValueError when goal is unreachable."""
        dist = self.distances_to(goal)
        if dist[start] < 0:
            raise ValueError(f"no route from cell {list(start)} to cell {list(goal)}")
        path = [start]
        while path[-1] != goal:
            r, c = path[-1]
            path.append(
                next(
                    (r + dr, c + dc)
                    for dr, dc in _NEIGHBOURS
                    if self.in_bounds((r + dr, c + dc)) and dist[r + dr, c + dc] == dist[r, c] - 1
                )
            )
        return path
