"""Imperfect demos: named, seeded corruptions of a variant's demo that model how a VLM's (or a hurried human's) route
goes wrong — corners cut, a miscalibrated picture, a missing stretch, detours, too few points, jitter, odd timing.

``corrupt(demo, "corner_cut=2", task, seed)`` returns a new Demo; sizes are in the task's ``demo_scale`` (a maze cell,
5 cm on the Fetch table) or in shares of the route or of the map. A corrupted demo still goes through the same
acceptance check as any other (agent/experiments/evaluate.py: check_demo); corruption never bypasses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mstt.agent.core.demo import Demo
from mstt.agent.worlds import Task
from mstt.skills.windows import arc_lengths, points_at_arc

Corruption = Callable[[Demo, float, Task, np.random.Generator], Demo]


@dataclass(frozen=True)
class CorruptionSpec:
    """A corruption by name at one level, as written on the command line: ``NAME`` or ``NAME=LEVEL``."""

    name: str
    level: float

    def __str__(self) -> str:
        return f"{self.name}={self.level:g}"


def _route(demo: Demo, points: np.ndarray, breaks: list[int] | None = None) -> Demo:
    """A geometric corruption's result: a route without timestamps (a drawn route carries none)."""
    return demo.model_copy(update={"points": points.tolist(), "timestamps": None, "breaks": breaks or []})


def corner_cut(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """A waypoint every ``level`` units of route (cells in the maze) joined by straight segments, which clip the wall
    corners the route turns around."""
    points = demo.positions
    total = arc_lengths(points)[-1]
    spacing = level * task.demo_scale
    s = np.append(np.arange(0.0, total, spacing), total)
    return _route(demo, points_at_arc(points, s))


def sparse(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """Only ``level`` points, evenly spaced along the route (a VLM that names few waypoints)."""
    points = demo.positions
    count = max(2, int(level))
    return _route(demo, points_at_arc(points, np.linspace(0.0, arc_lengths(points)[-1], count)))


def calibration(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """A picture read with a wrong calibration: the route scaled by 1 +- ``level`` about its centre and shifted by
    ``level`` times the route's extent, in a random direction."""
    points = demo.positions
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    extent = float(np.max(points.max(axis=0) - points.min(axis=0)))
    direction = rng.normal(size=points.shape[1])
    direction /= np.linalg.norm(direction)
    scale = 1.0 + level * rng.choice([-1.0, 1.0])
    return _route(demo, centre + scale * (points - centre) + level * extent * direction)


def gap(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """A missing stretch: the share ``level`` of the route around a random point of its middle is not shown (the demo
    becomes two pieces with a break between them)."""
    points = demo.positions
    arc = arc_lengths(points)
    total = arc[-1]
    half = level * total / 2
    middle = rng.uniform(0.3, 0.7) * total
    keep_before = arc < middle - half
    keep_after = arc > middle + half
    before, after = points[keep_before], points[keep_after]
    if len(before) < 2 or len(after) < 2:
        raise ValueError(f"gap={level:g} leaves no route on one side; use a smaller share")
    return _route(demo, np.concatenate([before, after]), breaks=[len(before)])


def detour(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """A non-expert back-and-forth: at a random point of the route's middle the demonstrator walks ``level`` units
    back along the route and then forward again (a loop on the route)."""
    points = demo.positions
    arc = arc_lengths(points)
    total = arc[-1]
    step = float(np.median(np.diff(arc))) or task.demo_scale / 10
    turn = rng.uniform(0.3, 0.7) * total
    back = max(0.0, turn - level * task.demo_scale)
    s_back = np.arange(turn, back, -step)
    loop = np.concatenate([s_back, s_back[::-1]])
    before, after = points[arc < turn], points[arc >= turn]
    return _route(demo, np.concatenate([before, points_at_arc(points, loop), after]))


def jitter(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """A wobbling route: smooth Gaussian noise of std ``level`` units, correlated over one unit of route (a shaky
    hand, a noisy read-out of the picture); it fades out over one unit at either end, so start and goal stay."""
    points = demo.positions
    arc = arc_lengths(points)
    noise = rng.normal(size=points.shape)
    # Smooth along the route with a Gaussian kernel one demo_scale wide, then restore the requested std.
    distance = arc[:, None] - arc[None, :]
    weights = np.exp(-0.5 * (distance / task.demo_scale) ** 2)
    smooth = weights @ noise / weights.sum(axis=1, keepdims=True)
    smooth *= level * task.demo_scale / max(float(smooth.std()), 1e-12)
    smooth *= np.clip(np.minimum(arc, arc[-1] - arc) / task.demo_scale, 0.0, 1.0)[:, None]
    return demo.model_copy(update={"points": (points + smooth).tolist()})


def time_warp(demo: Demo, level: float, task: Task, rng: np.random.Generator) -> Demo:
    """The same route at a speed that drifts smoothly by a factor of up to exp(+-``level``) (a demonstrator who
    hurries and dawdles). Needs timestamps; the geometry is untouched."""
    if demo.timestamps is None:
        raise ValueError("time_warp needs a demo with timestamps")
    times = np.asarray(demo.timestamps)
    steps = np.diff(times)
    phase = rng.uniform(0, 2 * np.pi)
    cycles = rng.uniform(1.0, 3.0)
    u = np.linspace(0.0, 1.0, len(steps))
    factor = np.exp(level * np.sin(2 * np.pi * cycles * u + phase))
    warped = np.concatenate([[0.0], np.cumsum(steps * factor)])
    return demo.model_copy(update={"timestamps": warped.tolist()})


CORRUPTIONS: dict[str, Corruption] = {
    "corner_cut": corner_cut,
    "sparse": sparse,
    "calibration": calibration,
    "gap": gap,
    "detour": detour,
    "jitter": jitter,
    "time_warp": time_warp,
}
DEFAULT_LEVELS: dict[str, float] = {
    "corner_cut": 2.0,
    "sparse": 10.0,
    "calibration": 0.05,
    "gap": 0.1,
    "detour": 2.0,
    "jitter": 0.05,
    "time_warp": 0.5,
}
"""The level a bare ``NAME`` means: the milder of the two levels the benchmark runs."""


def parse_corruption(text: str) -> CorruptionSpec:
    """``NAME`` or ``NAME=LEVEL`` -> a spec; refuses an unknown name or a level that is not a positive number."""
    name, _, level_text = text.partition("=")
    name = name.strip()
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption {name!r} is not known; choose one of {sorted(CORRUPTIONS)} (NAME or NAME=LEVEL)")
    if not level_text:
        return CorruptionSpec(name, DEFAULT_LEVELS[name])
    try:
        level = float(level_text)
    except ValueError:
        raise ValueError(f"corruption {text!r}: level {level_text!r} is not a number") from None
    if not (np.isfinite(level) and level > 0):
        raise ValueError(f"corruption {text!r}: level must be a finite number > 0")
    return CorruptionSpec(name, level)


def corrupt(demo: Demo, spec: CorruptionSpec | str, task: Task, seed: int = 0) -> Demo:
    """``demo`` corrupted by ``spec``, reproducibly for a seed."""
    spec = parse_corruption(spec) if isinstance(spec, str) else spec
    if demo.breaks:
        raise ValueError("corrupting a demo that already has breaks is not supported")
    return CORRUPTIONS[spec.name](demo, spec.level, task, np.random.default_rng(seed))
