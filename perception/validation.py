"""Checks a route read off a picture before it becomes a demo: inside the image, off walls, zones and
furniture, on the floor of a room, segments that do not cut through them (nor through a house's thin walls
and closed doorways), and ends at the agent and at the target.

Every problem is one sentence naming the point or segment in the image's pixels, so it can be shown to
a user or appended to a re-prompt as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mstt.perception.geometry import Box
from mstt.perception.scene import Scene

ENDPOINT_TOLERANCE = 0.6
"""World units a route's first (last) point may lie from the agent (target): a bit over half a maze
cell, since the env puts start and goal up to 0.25 from their cells' centres."""
SEGMENT_STEP = 0.05
"""World units between the samples checked along each segment (a maze cell is 1 unit wide); smaller
where a zone is thinner."""
SAMPLES_PER_FEATURE = 4
"""At least this many samples fall across the thinnest zone or region a segment could cross."""
MAX_REPORTED = 5
"""Problems of one kind listed individually; the rest are counted, keeping re-prompts short."""


def _where(scene: Scene, point: np.ndarray, avoid: Sequence[Box]) -> str | None:
    """What forbidden thing a world point is in, or None."""
    if scene.grid is not None and scene.grid.in_wall(point[None])[0]:
        row, col = scene.grid.cells_of(point[None])[0]
        rows, cols = scene.grid.shape
        if 0 <= row < rows and 0 <= col < cols:
            return f"inside a wall (cell ({row}, {col}))"
        return "outside the maze"
    if scene.rooms and scene.room_of(point) is None:
        return "outside every room"
    for zone in scene.zones:
        if zone.contains(point[None])[0]:
            return f"inside the forbidden {zone.name or 'zone'}"
    for box in scene.furniture:
        if box.contains(point[None])[0]:
            return f"inside the {box.name or 'furniture'}"
    for box in avoid:
        if box.contains(point[None])[0]:
            return f"inside the region to avoid ({box.name or 'unnamed'})"
    return None


def _capped(problems: list[str], what: str) -> list[str]:
    if len(problems) <= MAX_REPORTED:
        return problems
    return problems[:MAX_REPORTED] + [f"... and {len(problems) - MAX_REPORTED} more {what}"]


def _px(uv: np.ndarray) -> str:
    return f"({uv[0]:.0f}, {uv[1]:.0f})"


def route_problems(
    pixels: np.ndarray,
    scene: Scene,
    target: np.ndarray | None = None,
    avoid: Sequence[Box] = (),
    tolerance: float = ENDPOINT_TOLERANCE,
    step: float = SEGMENT_STEP,
    target_region: Box | None = None,
) -> list[str]:
    """Everything wrong with a route given as (K, 2) pixels of the scene's calibrated image; [] if valid.

    target: (P,) world position the route must end at (default: the scene's goal); target_region: a
    region any point of which is a fine end (then `target` is not needed); avoid: extra boxes the
    instruction rules out (see perception.goals).
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 2 or pixels.shape[1] != 2:
        return [f"points must be [u, v] pairs, got an array of shape {pixels.shape}"]
    if len(pixels) < 2:
        return [f"a route needs at least 2 points (start and end), got {len(pixels)}"]
    if not np.all(np.isfinite(pixels)):
        return ["some coordinates are NaN or infinite"]
    width, height = scene.image_size
    outside = [
        f"point {i} {_px(uv)} lies outside the {width}x{height} image"
        for i, uv in enumerate(pixels)
        if not (0 <= uv[0] <= width and 0 <= uv[1] <= height)
    ]
    if outside:
        return _capped(outside, "points outside the image")

    world = scene.to_world(pixels)
    # A thin zone (Fetch's is 4 cm deep) must not slip between two samples.
    for box in (*scene.zones, *avoid):
        step = min(step, float(np.min(np.subtract(box.high, box.low)[:2])) / SAMPLES_PER_FEATURE)
    in_forbidden = []
    for i, point in enumerate(world):
        where = _where(scene, point, avoid)
        if where is not None:
            in_forbidden.append(f"point {i} {_px(pixels[i])} is {where}")
    crossing = []
    for i in range(len(world) - 1):
        barrier = scene.barrier_crossed(world[i], world[i + 1])
        if barrier is not None:
            crossing.append(
                f"the segment from point {i} to point {i + 1} passes through {barrier} between pixels "
                f"{_px(pixels[i])} and {_px(pixels[i + 1])}"
            )
            continue
        length = float(np.linalg.norm(world[i + 1] - world[i]))
        fractions = np.linspace(0.0, 1.0, max(2, int(np.ceil(length / step)) + 1))[1:-1]
        for t in fractions:
            sample = world[i] + t * (world[i + 1] - world[i])
            where = _where(scene, sample, avoid)
            if where is not None:
                uv = pixels[i] + t * (pixels[i + 1] - pixels[i])
                crossing.append(f"the segment from point {i} to point {i + 1} passes {where} near pixel {_px(uv)}")
                break
    problems = _capped(in_forbidden, "points in forbidden places") + _capped(crossing, "crossing segments")

    if scene.start is not None:
        gap = float(np.linalg.norm(world[0, :2] - scene.start[:2]))
        if gap > tolerance:
            at = _px(scene.to_pixel(scene.start[None])[0])
            problems.append(
                f"the route starts {gap:.2f} world units from the agent; its first point must be on the "
                f"agent at pixel {at}"
            )
    target = scene.goal if target is None else target
    if target_region is not None:
        if not target_region.contains(world[-1:])[0]:
            problems.append(
                f"the route ends at pixel {_px(pixels[-1])}, outside the {target_region.name or 'target'} region; "
                "its last point must lie inside it"
            )
    elif target is not None:
        gap = float(np.linalg.norm(world[-1, :2] - target[:2]))
        if gap > tolerance:
            at = _px(scene.to_pixel(np.r_[target[:2], scene.plane_z][None])[0])
            problems.append(
                f"the route ends {gap:.2f} world units from the target; its last point must be on the "
                f"target at pixel {at}"
            )
    return problems
