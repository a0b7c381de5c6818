"""Draws a demo (or a refused route) over the picture it was read from and saves it as a PNG, so a
user can judge at a glance whether the route follows the open corridor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mstt.agent.core.demo import Demo
from mstt.perception.scene import Scene
from mstt.perception.segmentation import as_rgb

MIN_OVERLAY_SIDE = 480
"""Smaller pictures are scaled up by an integer factor to at least this side, so the route is legible."""
ROUTE_RGB = (255, 230, 0)
OUTLINE_RGB = (0, 0, 0)
START_RGB = (0, 255, 255)
END_RGB = (255, 0, 255)
ZONE_RGBA = (255, 0, 0, 90)
REFUSED_RGB = (255, 60, 60)
LINE_WIDTH = 3
POINT_RADIUS = 3
MAX_PROBLEM_LINES = 5
TEXT_PAD = 4


def draw_route(
    image: Image.Image | np.ndarray,
    pixels: np.ndarray,
    scene: Scene,
    path: str | Path,
    title: str = "",
    problems: Sequence[str] = (),
) -> Path:
    """Draw a route given as (K, 2) pixels of the scene's image, forbidden zones, a title and any
    problems; write the PNG to `path` (parent folders are created). Returns the path."""
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    scale = max(1, -(-MIN_OVERLAY_SIDE // min(width, height)))
    canvas = Image.fromarray(rgb).resize((width * scale, height * scale), Image.NEAREST).convert("RGBA")
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for zone in scene.zones:
        low, high = zone.low, zone.high
        corners = np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])
        uv = scene.to_pixel(corners) * scale
        draw.polygon([tuple(p) for p in uv], fill=ZONE_RGBA, outline=ZONE_RGBA[:3] + (255,))
    canvas = Image.alpha_composite(canvas, layer).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    uv = [tuple(p) for p in pixels[np.isfinite(pixels).all(axis=1)] * scale]
    colour = REFUSED_RGB if problems else ROUTE_RGB
    if len(uv) >= 2:
        draw.line(uv, fill=OUTLINE_RGB, width=LINE_WIDTH + 2, joint="curve")
        draw.line(uv, fill=colour, width=LINE_WIDTH, joint="curve")
    for u, v in uv:
        dot = [u - POINT_RADIUS, v - POINT_RADIUS, u + POINT_RADIUS, v + POINT_RADIUS]
        draw.ellipse(dot, fill=colour, outline=OUTLINE_RGB)
    if uv:
        for (u, v), ring in ((uv[0], START_RGB), (uv[-1], END_RGB)):
            r = 3 * POINT_RADIUS
            draw.ellipse([u - r, v - r, u + r, v + r], outline=ring, width=2)
    lines = [title] if title else []
    lines += [f"refused: {p}" for p in problems[:MAX_PROBLEM_LINES]]
    y = TEXT_PAD
    for line in lines:
        box = draw.textbbox((TEXT_PAD, y), line)
        draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=(0, 0, 0))
        draw.text((TEXT_PAD, y), line, fill=(255, 255, 255))
        y = box[3] + TEXT_PAD
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def overlay_path(directory: str | Path, task: str, variant: str, backend: str, status: str) -> Path:
    """A fresh file name for an overlay: <task>-<variant>-<backend>-<status>-<time in ns>.png."""
    return Path(directory) / f"{task}-{variant}-{backend}-{status}-{time.time_ns()}.png"


def draw_demo(
    image: Image.Image | np.ndarray, demo: Demo, scene: Scene, path: str | Path, title: str | None = None
) -> Path:
    """Draw `demo` (world coordinates) over the picture of `scene` and save it as a PNG at `path`."""
    if title is None:
        title = f"{demo.task} {demo.variant} | source {demo.source} | {len(demo.points)} points"
    return draw_route(image, scene.to_pixel(demo.positions), scene, path, title)
