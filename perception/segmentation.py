"""Colour segmentation of the rendered top-down maze frame: wall pixels, the agent and goal markers,
and the wall occupancy of every maze cell read off the pixels through the camera calibration.

PointMaze draws walls orange (rgba 0.7 0.5 0.3), the floor as a blue-grey checker, the agent as a green
ball and the goal as a translucent red ball; the thresholds below separate these under MuJoCo's shading.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

from mstt.perception.geometry import Calibration, MazeGrid

Marker = Literal["agent", "goal"]

WALL_HUE_DEG = (15.0, 50.0)
"""Hue range of wall pixels: lit tops are ~30 deg, shaded sides ~36 deg, the floor ~210, the goal ~0."""
WALL_MIN_SATURATION = 0.25
"""Walls are strongly coloured; grey anti-aliased edges between floor tiles are not."""
WALL_MIN_VALUE = 30
"""Below this brightness (0-255) the hue of a pixel is noise."""
GREEN_MARGIN = 40
"""Agent pixels: green exceeds red and blue by this much (the criterion tests/test_maze.py checks the
calibration with, within one pixel)."""
RED_MAX_RATIO = 0.35
"""Goal pixels: green and blue below this share of red (orange walls have green ~0.7 of red)."""
RED_MIN_VALUE = 80
MIN_MARKER_PIXELS = 20
"""Fewer matching pixels than this and the marker counts as not visible (stray anti-aliasing)."""
OCCLUSION_MARGIN_PX = 2
"""Outline pixels this close to a wall pixel may be cut by the wall and are left out of the circle fit."""
MIN_OUTLINE_PIXELS = 12
"""Fewer unoccluded outline pixels than this and the centroid is used as is."""
CELL_PATCH = 0.3
"""Half-size, in cells, of the square sampled around each cell's centre when reading occupancy."""
WALL_SHARE = 0.5
"""A cell is a wall when more than this share of its sampled patch is wall-coloured."""


def as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an (H, W, 3|4) array (uint8, or float in [0, 1]) -> (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB(A) image of shape (H, W, 3|4), got shape {array.shape}")
    array = array[..., :3]
    if np.issubdtype(array.dtype, np.floating):
        if array.min() < 0.0 or array.max() > 1.0:
            raise ValueError("a float image must hold values in [0, 1]")
        return np.round(array * 255.0).astype(np.uint8)
    return array.astype(np.uint8, copy=False)


def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> hue in degrees [0, 360), saturation [0, 1], value [0, 255], each (H, W)."""
    rgb = rgb.astype(np.float64)
    top, bottom = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = top - bottom
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.select(
        [top == r, top == g],
        [((g - b) / safe) % 6.0, (b - r) / safe + 2.0],
        (r - g) / safe + 4.0,
    )
    hue = np.where(chroma > 0, hue * 60.0, 0.0)
    saturation = np.where(top > 0, chroma / np.where(top > 0, top, 1.0), 0.0)
    return hue, saturation, top


def wall_mask(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) bool, True on wall-coloured pixels (tops and sides)."""
    hue, saturation, value = hsv(rgb)
    return (
        (hue >= WALL_HUE_DEG[0])
        & (hue <= WALL_HUE_DEG[1])
        & (saturation >= WALL_MIN_SATURATION)
        & (value >= WALL_MIN_VALUE)
    )


def marker_mask(rgb: np.ndarray, marker: Marker) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) bool, True on the pixels of the green agent or the red goal."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    if marker == "agent":
        return (g > r + GREEN_MARGIN) & (g > b + GREEN_MARGIN)
    if marker == "goal":
        return (r >= RED_MIN_VALUE) & (g < RED_MAX_RATIO * r) & (b < RED_MAX_RATIO * r)
    raise ValueError(f"unknown marker {marker!r}; use 'agent' or 'goal'")


def _shifted_any(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square."""
    padded = np.pad(mask, radius)
    height, width = mask.shape
    out = np.zeros_like(mask)
    for dv in range(2 * radius + 1):
        for du in range(2 * radius + 1):
            out |= padded[dv : dv + height, du : du + width]
    return out


def _circle_fit(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Centre of the least-squares circle through the points (algebraic fit: u^2+v^2+Du+Ev+F=0)."""
    design = np.column_stack([u, v, np.ones_like(u)])
    (d, e, _), *_ = np.linalg.lstsq(design, -(u * u + v * v), rcond=None)
    return np.array([-d / 2, -e / 2])


def marker_centroid(rgb: np.ndarray, marker: Marker) -> np.ndarray | None:
    """(2,) pixel coordinates (u, v) of the marker's centre, or None when it is not visible.

    The centroid of the marker's pixels, unless a wall hides part of the ball (walls lean over the
    floor in a perspective view, and the agent's drawn ball is twice its collision radius): then the
    centre of the circle through the ball's outline where it meets the floor. Pixel i spans [i, i + 1),
    the convention of mstt.agent.core.camera, hence the +0.5.
    """
    mask = marker_mask(rgb, marker)
    v, u = np.nonzero(mask)
    if len(u) < MIN_MARKER_PIXELS:
        return None
    centroid = np.array([u.mean() + 0.5, v.mean() + 0.5])
    outline = mask & ~(~_shifted_any(~mask, 1))  # marker pixels with a non-marker neighbour
    near_wall = _shifted_any(wall_mask(rgb), OCCLUSION_MARGIN_PX)
    if not (outline & near_wall).any():
        return centroid
    ov, ou = np.nonzero(outline & ~near_wall)
    if len(ou) < MIN_OUTLINE_PIXELS:
        return centroid
    return _circle_fit(ou + 0.5, ov + 0.5)


def read_walls(
    rgb: np.ndarray,
    grid: MazeGrid,
    camera: Calibration,
    patch: float = CELL_PATCH,
    share: float = WALL_SHARE,
) -> np.ndarray:
    """(R, C) bool occupancy of the maze cells as the frame shows them (True = wall).

    Each cell is sampled around the projection of its centre at the walls' top height, where a wall's
    visible top face is; a free cell shows floor there (a neighbouring wall's side leans in by at most
    wall_height / camera distance of a cell, well inside the patch margin).
    """
    mask = wall_mask(rgb)
    rows, cols = grid.walls.shape
    cells = np.array([(r, c) for r in range(rows) for c in range(cols)])
    centres = grid.centres(cells)
    top = np.column_stack([centres, np.full(len(centres), grid.wall_height)])
    uv = camera.world_to_pixel(top)
    edge = camera.world_to_pixel(top + np.array([patch, patch, 0.0]))
    half = np.abs(edge - uv)
    height, width = mask.shape
    if np.any(uv - half < 0) or np.any(uv[:, 0] + half[:, 0] > width) or np.any(uv[:, 1] + half[:, 1] > height):
        raise ValueError("part of the maze lies outside the frame; render it with the task's calibrated camera")
    occupancy = np.zeros(len(cells), dtype=bool)
    for i, ((u, v), (hu, hv)) in enumerate(zip(uv, half)):
        window = mask[int(round(v - hv)) : int(round(v + hv)) + 1, int(round(u - hu)) : int(round(u + hu)) + 1]
        occupancy[i] = window.mean() > share
    return occupancy.reshape(rows, cols)
