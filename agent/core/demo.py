"""The observation-only demonstration: world coordinates of a route through a changed world.

One JSON format for every source (scripted expert, a human, a VLM reading a picture), so that mask
inference never cares where a demo came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

DemoSource = Literal["scripted", "human", "vlm"]
DEMO_FORMAT_VERSION = 2
"""Version 2 added ``breaks``; version 1 files (no breaks) read unchanged."""
READABLE_FORMAT_VERSIONS = (1, 2)
DEMO_FILE_MODE = 0o644


class Demo(BaseModel):
    """Positions (K, P) in world coordinates, optionally timestamped, tagged with their variant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = DEMO_FORMAT_VERSION
    task: str
    """Task family, e.g. 'maze' or 'fetch'."""
    name: str
    """Config name the demo belongs to, e.g. 'three-routes'."""
    variant: str
    """Structural variant it demonstrates, e.g. 't1'."""
    source: DemoSource
    points: list[list[float]]
    """World coordinates, one row per sample: (x, y) for the maze, (x, y, z) for Fetch."""
    timestamps: list[float] | None = None
    """Seconds from the first point; None when only the path's shape is known."""
    breaks: list[int] = []
    """Indices i where the route is missing between points i - 1 and i (a stretch the demonstrator did not show):
    the demo is then several pieces, and nothing is read off the straight line across a break."""

    @model_validator(mode="after")
    def _check(self) -> Demo:
        if self.format_version not in READABLE_FORMAT_VERSIONS:
            raise ValueError(
                f"format_version {self.format_version} is not one this code reads {list(READABLE_FORMAT_VERSIONS)}"
            )
        if any(not 0 < i < len(self.points) for i in self.breaks) or sorted(set(self.breaks)) != self.breaks:
            raise ValueError(
                f"breaks must be increasing point indices in [1, {len(self.points) - 1}], got {self.breaks}"
            )
        if len(self.points) < 2:
            raise ValueError(f"a demo needs at least 2 points, got {len(self.points)}")
        dims = {len(p) for p in self.points}
        if len(dims) != 1 or dims.pop() not in (2, 3):
            raise ValueError("every point must have the same dimension, 2 or 3")
        if not np.all(np.isfinite(np.asarray(self.points))):
            raise ValueError("points contain NaN or infinity")
        if self.timestamps is not None:
            if len(self.timestamps) != len(self.points):
                raise ValueError(
                    f"{len(self.timestamps)} timestamps for {len(self.points)} points"
                )
            if np.any(np.diff(self.timestamps) <= 0):
                raise ValueError("timestamps must increase strictly")
        return self

    @property
    def positions(self) -> np.ndarray:
        """(K, P) float64 array of the demo's points."""
        return np.asarray(self.points, dtype=np.float64)

    def pieces(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The route's unbroken pieces in order: (K_i, P) positions and (K_i,) timestamps (None without times)."""
        bounds = [0, *self.breaks, len(self.points)]
        times = None if self.timestamps is None else np.asarray(self.timestamps, dtype=np.float64)
        return [
            (self.positions[a:b], None if times is None else times[a:b]) for a, b in zip(bounds[:-1], bounds[1:])
        ]

    def oriented(self, start: np.ndarray, goal: np.ndarray) -> Demo:
        """The demo as a task from ``start`` to ``goal`` travels its route: reversed when the route point nearest the
        goal comes before the one nearest the start (the task walks the route backwards), else unchanged."""
        points = self.positions
        first = int(np.argmin(np.linalg.norm(points - np.asarray(start)[: points.shape[1]], axis=1)))
        last = int(np.argmin(np.linalg.norm(points - np.asarray(goal)[: points.shape[1]], axis=1)))
        return self.reversed() if last < first else self

    def reversed(self) -> Demo:
        """The same route walked from its end to its start (timestamps mirrored, breaks kept between the same
        points)."""
        n = len(self.points)
        times = None if self.timestamps is None else [self.timestamps[-1] - t for t in reversed(self.timestamps)]
        return self.model_copy(
            update={"points": self.points[::-1], "timestamps": times, "breaks": sorted(n - i for i in self.breaks)}
        )

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash never leaves a half-written demo file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.model_dump_json(indent=1))
            os.chmod(tmp, DEMO_FILE_MODE)  # mkstemp creates 0600; a demo is a shareable file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Demo:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: demo file not found") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"field '{'.'.join(map(str, e['loc'])) or '(top level)'}': {e['msg']}"
                for e in err.errors()
            )
            raise ValueError(f"{path}: invalid demo: {problems}") from None
