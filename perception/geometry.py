"""The map geometry a picture is read against: a camera calibration, an axis-aligned box, the maze grid.

Plain values with no knowledge of any task; perception.scene assembles them into a Scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator


class Calibration(Protocol):
    """A calibrated camera, e.g. mstt.agent.core.camera.FreeCamera."""

    width: int
    height: int

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixels (u right, v down)."""
        ...

    def pixel_to_world(self, pixels: np.ndarray, plane_z: float) -> np.ndarray:
        """(N, 2) pixels -> (N, 3) world points on the plane z = plane_z."""
        ...


class Box(BaseModel):
    """An axis-aligned box in world coordinates: a forbidden zone, a region, a named area."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: tuple[float, ...]
    high: tuple[float, ...]
    name: str = ""

    @model_validator(mode="after")
    def _check(self) -> Box:
        if len(self.low) != len(self.high) or len(self.low) not in (2, 3):
            raise ValueError(f"low {self.low} and high {self.high} must both have 2 or 3 entries")
        if any(lo >= hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"every low {self.low} must be below high {self.high}")
        return self

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N, P) points -> (N,) bool; a 2-D box ignores a third coordinate (it spans all heights)."""
        points = np.atleast_2d(points)
        dims = min(len(self.low), points.shape[1])
        inside = (points[:, :dims] >= self.low[:dims]) & (points[:, :dims] <= self.high[:dims])
        return inside.all(axis=1)

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.low) + np.asarray(self.high)) / 2


@dataclass(frozen=True, eq=False)
class MazeGrid:
    """Cell geometry of a PointMaze map at scaling 1 and which cells are walls.

    The formulas are MazeLayout.cell_to_xy / xy_to_cell, vectorised (tests check they agree).
    """

    walls: np.ndarray
    """(R, C) bool, True where a wall box stands (blocked cells included)."""
    wall_height: float
    """Height of the wall boxes (world units): their tops are what a top-down camera sees."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    def cells_of(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2+) world points -> (N, 2) int (row, col); may lie outside the grid."""
        xy = np.atleast_2d(xy)
        rows, cols = self.walls.shape
        return np.column_stack([np.floor(rows / 2 - xy[:, 1]), np.floor(xy[:, 0] + cols / 2)]).astype(np.int64)

    def centres(self, cells: np.ndarray) -> np.ndarray:
        """(N, 2) (row, col) -> (N, 2) world centres."""
        cells = np.atleast_2d(cells)
        rows, cols = self.walls.shape
        return np.column_stack([cells[:, 1] + 0.5 - cols / 2, rows / 2 - cells[:, 0] - 0.5])

    def in_wall(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2+) world points -> (N,) bool: inside a wall cell or outside the grid."""
        cells = self.cells_of(xy)
        rows, cols = self.walls.shape
        inside = (cells[:, 0] >= 0) & (cells[:, 0] < rows) & (cells[:, 1] >= 0) & (cells[:, 1] < cols)
        hit = np.ones(len(cells), dtype=bool)
        hit[inside] = self.walls[cells[inside, 0], cells[inside, 1]]
        return hit

    def bounds(self) -> Box:
        rows, cols = self.walls.shape
        return Box(low=(-cols / 2, -rows / 2), high=(cols / 2, rows / 2), name="maze")


class SceneObject(BaseModel):
    """A named thing a goal can point at ('the red ball'): where it stands on the route plane."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Its name in the config, e.g. 'red_ball'."""
    kind: str
    """What it is: 'ball', 'box', 'key'."""
    colour: str
    position: tuple[float, ...]

    @property
    def label(self) -> str:
        return f"the {self.colour} {self.kind}"


class Doorway(BaseModel):
    """A doorway between two named rooms: its two ends on the floor, and whether a door closes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rooms: tuple[str, str]
    ends: tuple[tuple[float, float], tuple[float, float]]
    closed: bool = False

    @property
    def label(self) -> str:
        a, b = (room.replace("_", " ") for room in self.rooms)
        return f"the {'closed' if self.closed else 'open'} doorway between the {a} and the {b}"

    @property
    def centre(self) -> np.ndarray:
        return np.mean(np.asarray(self.ends, dtype=np.float64), axis=0)
