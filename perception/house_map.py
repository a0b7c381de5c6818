"""Reads a house's top-down map picture (HouseEnv.render_map) with no model and no config walls: walls, closed
doorways, furniture and zones are segmented by the colours they are drawn in, the solid parts grown by the agent's
radius into an occupancy raster, and the shortest free path on it (scipy's Dijkstra over the 8-connected pixels)
simplified by line of sight to a few waypoints on the floor (x, z).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from mstt.agent.core.house_layout import CLEARANCE, CLOSED_DOORWAY_RGB, WALL_RGB, ZONE_MARGIN
from mstt.perception.errors import PerceptionError
from mstt.perception.geometry import Box
from mstt.perception.scene import Scene

SKY_RGB = (64, 209, 255)
"""The background around the house on MiniWorld's top view: never floor."""
ZONE_RGB = (255, 182, 0)
"""A forbidden zone's orange floor patch as the map shows it (house.ZONE_COLOUR, lit)."""
FURNITURE_RGB = ((0, 0, 255), (0, 255, 0), (129, 129, 129), (146, 50, 252), (255, 0, 0), (255, 255, 0))
"""MiniWorld's box colours (blue, green, grey, purple, red, yellow) as the top view shows a box's lit top face."""
COLOUR_TOLERANCE = 10
"""A pixel has a drawn colour when no channel differs from it by more than this (texture noise stays farther)."""
WALL_TOLERANCE = 20
"""Looser for black walls: the darkest floor checker is 47 levels from black."""
MIN_FURNITURE_AREA = 0.5
"""Square metres below which a box-coloured blob is a goal object (0.4 m across), not furniture: objects mark
places and do not block the agent."""
CLEARANCE_COST = 4.0
"""Extra cost per metre of path, at most, for walking closer to a wall than the planner's CLEARANCE; the path
then keeps to the middle of halls and doorways where it can."""
LINE_SLACK_PX = 1.5
"""Pixels of clearance a simplified straight line may give up against the pixel path it replaces."""
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""Half the 8-neighbourhood: each undirected pixel edge once."""


@dataclass(frozen=True, eq=False)
class MapReading:
    """What a map picture shows, as rasters of its pixels and boxes on the floor."""

    solid: np.ndarray
    """(H, W) bool: walls, closed doorways, furniture and the sky outside the house."""
    zones: np.ndarray
    """(H, W) bool: forbidden floor (orange patches), which the agent's centre must not enter."""
    clearance: np.ndarray
    """(H, W) float: metres from each pixel's centre to the nearest solid pixel's centre."""
    furniture: tuple[Box, ...]
    """Each furniture blob's bounding box on the floor, named 'furniture 1', ... in reading order."""


def _near(rgb: np.ndarray, colour: Sequence[int], tolerance: int) -> np.ndarray:
    return np.asarray(np.abs(rgb.astype(np.int16) - np.asarray(colour, dtype=np.int16)).max(axis=-1) <= tolerance)


def _pixel_box(scene: Scene, rows: slice, cols: slice, name: str) -> Box:
    corners = scene.to_world(np.array([[cols.start, rows.start], [cols.stop, rows.stop]], dtype=np.float64))
    low, high = corners.min(axis=0), corners.max(axis=0)
    return Box(low=tuple(float(v) for v in low[:2]), high=tuple(float(v) for v in high[:2]), name=name)


def read_map(rgb: np.ndarray, scene: Scene) -> MapReading:
    """The picture's solid parts, zones and clearance; rgb (H, W, 3) uint8 of the scene's calibrated size."""
    per_metre = _pixels_per_metre(scene)
    boxes = np.zeros(rgb.shape[:2], dtype=bool)
    for colour in FURNITURE_RGB:
        boxes |= _near(rgb, colour, COLOUR_TOLERANCE)
    labels, count = ndimage.label(boxes)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    large = areas >= MIN_FURNITURE_AREA * per_metre**2
    large[0] = False
    furniture_px = large[labels]
    slices = ndimage.find_objects(labels)
    furniture = tuple(
        _pixel_box(scene, rows, cols, f"furniture {n + 1}")
        for n, (rows, cols) in enumerate(s for k, s in enumerate(slices) if large[k + 1] and s is not None)
    )
    solid = (
        _near(rgb, WALL_RGB, WALL_TOLERANCE)
        | _near(rgb, CLOSED_DOORWAY_RGB, COLOUR_TOLERANCE)
        | _near(rgb, SKY_RGB, COLOUR_TOLERANCE)
        | furniture_px
    )
    clearance = ndimage.distance_transform_edt(~solid) / per_metre
    return MapReading(
        solid=solid, zones=_near(rgb, ZONE_RGB, COLOUR_TOLERANCE), clearance=clearance, furniture=furniture
    )


def _pixels_per_metre(scene: Scene) -> float:
    a, b = scene.to_pixel(np.array([[0.0, 0.0], [1.0, 0.0]]))
    return float(np.linalg.norm(b - a))


def _box_mask(scene: Scene, box: Box, grow: float, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels whose centres lie in a floor box grown by ``grow`` metres."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5])
    world = scene.to_world(centres)
    low, high = np.asarray(box.low[:2]) - grow, np.asarray(box.high[:2]) + grow
    inside = ((world >= low) & (world <= high)).all(axis=1)
    return np.asarray(inside.reshape(shape))


def _free(reading: MapReading, scene: Scene, avoid: Sequence[Box]) -> np.ndarray:
    """(H, W) bool: where the agent's centre may stand: its body clear of solid parts, its centre off zones (and
    the boxes the instruction rules out) by ZONE_MARGIN."""
    per_metre = _pixels_per_metre(scene)
    keep_out = reading.zones.copy()
    if keep_out.any():
        keep_out = ndimage.binary_dilation(keep_out, iterations=max(1, math.ceil(ZONE_MARGIN * per_metre)))
    for box in avoid:
        keep_out |= _box_mask(scene, box, ZONE_MARGIN, reading.solid.shape)
    return np.asarray((reading.clearance > scene.agent_radius) & ~keep_out)


def _pixel_of(scene: Scene, point: np.ndarray, free: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the free pixel nearest a floor point (the point's own when free); None when none is free."""
    if not free.any():
        return None
    u, v = scene.to_pixel(np.asarray(point, dtype=np.float64)[None, :2])[0]
    row, col = int(np.clip(math.floor(v), 0, free.shape[0] - 1)), int(np.clip(math.floor(u), 0, free.shape[1] - 1))
    if free[row, col]:
        return row, col
    _, (rows, cols) = ndimage.distance_transform_edt(~free, return_indices=True)
    return int(rows[row, col]), int(cols[row, col])


def shortest_pixels(free: np.ndarray, cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
    """(K, 2) (row, col) pixels of the cheapest 8-connected path over ``free`` pixels, each step weighted by its
    length times the mean ``cost`` of its ends; empty when the goal cannot be reached."""
    height, width = free.shape
    index = np.full(free.shape, -1, dtype=np.int64)
    index[free] = np.arange(int(free.sum()))
    rows_from, rows_to, weights = [], [], []
    for dr, dc in _NEIGHBOURS:
        r0, r1 = max(0, -dr), height - max(0, dr)
        c0, c1 = max(0, -dc), width - max(0, dc)
        a, b = index[r0:r1, c0:c1], index[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        ok = (a >= 0) & (b >= 0)
        step = math.hypot(dr, dc)
        mean_cost = (cost[r0:r1, c0:c1] + cost[r0 + dr : r1 + dr, c0 + dc : c1 + dc]) / 2
        rows_from.append(a[ok])
        rows_to.append(b[ok])
        weights.append(step * mean_cost[ok])
    n = int(free.sum())
    graph = coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows_from), np.concatenate(rows_to))), shape=(n, n)
    ).tocsr()
    source, target = int(index[start]), int(index[goal])
    _, previous = dijkstra(graph, directed=False, indices=source, return_predecessors=True)
    if source != target and previous[target] < 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = [target]
    while order[-1] != source:
        order.append(int(previous[order[-1]]))
    pixels = np.argwhere(free)  # row-major, as index was numbered
    return np.asarray(pixels[order[::-1]])


def _line_clear(clearance: np.ndarray, keep_out: np.ndarray, a: np.ndarray, b: np.ndarray, need: float) -> bool:
    """Whether every pixel the segment a -> b ((row, col) centres) passes over has ``need`` clearance and is free."""
    n = max(2, int(math.ceil(2 * np.abs(b - a).max())) + 1)  # samples half a pixel apart
    points = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
    rows, cols = np.rint(points[:, 0]).astype(int), np.rint(points[:, 1]).astype(int)
    return bool((clearance[rows, cols] >= need).all() and not keep_out[rows, cols].any())


def simplify(pixels: np.ndarray, clearance: np.ndarray, keep_out: np.ndarray, slack: float) -> np.ndarray:
    """The path's corners kept by line of sight: from each kept pixel, the farthest later one reachable in a straight
    line over free pixels keeping as much clearance as the path itself had in between (at most the planner's
    CLEARANCE), less ``slack`` metres (a pixel path staircases; a line may not)."""
    if len(pixels) <= 2:
        return pixels
    along = clearance[pixels[:, 0], pixels[:, 1]]
    kept, i = [0], 0
    while i < len(pixels) - 1:
        j = len(pixels) - 1
        while j > i + 1:
            need = min(CLEARANCE, float(along[i : j + 1].min())) - slack
            if _line_clear(clearance, keep_out, pixels[i].astype(float), pixels[j].astype(float), need):
                break
            j -= 1
        kept.append(j)
        i = j
    return pixels[kept]


def plan_route(rgb: np.ndarray, scene: Scene, target: np.ndarray, avoid: Sequence[Box] = ()) -> np.ndarray:
    """(K, 2) floor points from the scene's start to ``target`` on the map as the picture shows it, around walls,
    closed doorways, furniture, zones and the boxes in ``avoid``. Raises PerceptionError when no route exists."""
    if scene.start is None:
        raise PerceptionError("the house scene does not know where the agent starts; give Scene.start")
    reading = read_map(rgb, scene)
    free = _free(reading, scene, avoid)
    start_px, goal_px = _pixel_of(scene, scene.start, free), _pixel_of(scene, target, free)
    if start_px is None or goal_px is None:
        raise PerceptionError("the map shows no free floor wide enough for the agent")
    cost = 1.0 + CLEARANCE_COST * np.clip((CLEARANCE - reading.clearance) / CLEARANCE, 0.0, 1.0)
    pixels = shortest_pixels(free, cost, start_px, goal_px)
    if len(pixels) == 0:
        named = ", ".join(box.name or "a region" for box in avoid)
        raise PerceptionError(
            f"no free route on the map from the agent at {np.round(scene.start[:2], 2).tolist()} to "
            f"{np.round(target[:2], 2).tolist()}: walls, closed doorways, furniture and zones"
            f"{' and ' + named if named else ''} leave no way {2 * scene.agent_radius:g} m wide"
        )
    corners = simplify(pixels, reading.clearance, ~free, LINE_SLACK_PX / _pixels_per_metre(scene))
    waypoints = scene.to_world(corners[:, ::-1] + 0.5)[1:-1]
    return np.vstack([scene.start[None, :2], waypoints, np.asarray(target, dtype=np.float64)[None, :2]])
