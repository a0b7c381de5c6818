"""The transfer picture of one variant: on the maze, walls (the new ones marked), the observation-only demo, the
skill tokens its mask keeps and drops, each drawn as its mean source-data window, and the agent's paths; in a world
with its own picture (the house's map, Fetch's camera frame), the demo and the paths drawn on that picture; and the
lines a video draws over a rendered frame (the demo's route, the agent's current plan).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw

from mstt.agent.core.io import RESULT_FILE_MODE
from mstt.agent.core.maze_layout import MazeLayout

WALL_COLOUR = "#5b5b5b"
BLOCKED_COLOUR = "#c0392b"
DEMO_COLOUR = "#1f5fbf"
KEPT_COLOUR = "#1e9e4a"
DROPPED_COLOUR = "#b8b8b8"
SUCCESS_COLOUR = "#f39c12"
FAILURE_COLOUR = "#8e44ad"
FRAME_DEMO_RGB = (255, 230, 0)
"""The demo's route over a video frame (yellow, as perception's overlays draw a demo)."""
FRAME_PLAN_RGB = (255, 0, 255)
"""The agent's current plan over a video frame."""
FRAME_LINE_WIDTH = 3
FIGURE_DPI = 110
CELL_INCHES = 0.55
"""Figure size per maze cell."""


def token_mean_windows(windows: np.ndarray, tokens: np.ndarray, num_skills: int) -> np.ndarray:
    """(M, H, P) source windows, (M,) tokens -> (L, H, P) mean window of each token (NaN where unseen).

    Tokens carry absolute position (see skills/windows.py), so a token's mean window is a place and a motion:
    drawn on the map it shows where that skill runs and which way.
    """
    sums = np.zeros((num_skills, *windows.shape[1:]))
    np.add.at(sums, tokens, windows)
    counts = np.bincount(tokens, minlength=num_skills).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None, None]


def draw_lines(frame: np.ndarray, lines: Sequence[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    """(H, W, 3) uint8 frame -> a copy with each (K, 2) pixel polyline drawn in its RGB colour, in order (later lines
    on top); rows that are not finite are skipped. The frame keeps its size."""
    picture = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    draw = ImageDraw.Draw(picture)
    for pixels, colour in lines:
        points = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) >= 2:
            draw.line([tuple(p) for p in points], fill=colour, width=FRAME_LINE_WIDTH, joint="curve")
    return np.asarray(picture)


def _save_atomic(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        FigureCanvasAgg(figure)  # attaches the canvas savefig draws on
        figure.savefig(tmp, format="png", bbox_inches="tight")  # tight: keep the legend outside the axes
        os.chmod(tmp, RESULT_FILE_MODE)  # mkstemp creates 0600; a figure is a shareable result
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


AGENT_LEGEND = (
    Line2D([], [], color=SUCCESS_COLOUR, label="agent, reached goal"),
    Line2D([], [], color=FAILURE_COLOUR, label="agent, did not"),
)


def _finish(figure: Figure, axes: Axes, legend: list[Line2D], title: str, path: Path) -> Path:
    """The legend right of the map, the title, and the PNG saved atomically."""
    axes.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save_atomic(figure, path)


def maze_transfer_figure(
    layout: MazeLayout,
    path: str | Path,
    demo: np.ndarray | None = None,
    token_windows: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    trajectories: Sequence[np.ndarray] = (),
    successes: Sequence[bool] = (),
    goal: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Draw one variant and save it as a PNG (written whole or not at all).

    Args:
        layout: the variant's grid (its blocked cells are drawn in red).
        path: output PNG.
        demo: (K, 2) demo positions.
        token_windows: (L, H, 2) mean window per token (NaN rows are skipped), from ``token_mean_windows``.
        mask: (L,) bool, tokens the demo's mask keeps (green) and drops (grey).
        trajectories: (T, 2) agent paths; ``successes`` colours them (reached the goal or not).
        goal: (2,) goal position (default: the layout's goal cell).
        title: figure title.
    """
    figure = Figure(figsize=(CELL_INCHES * layout.n_cols + 1.5, CELL_INCHES * layout.n_rows + 0.8))
    axes = figure.add_subplot()
    half_w, half_h = layout.n_cols / 2, layout.n_rows / 2
    blocked = set(layout.blocked)
    for r, c in np.argwhere(layout.walls):
        x0, y0 = c - half_w, half_h - r - 1
        colour = BLOCKED_COLOUR if (int(r), int(c)) in blocked else WALL_COLOUR
        axes.add_patch(Rectangle((x0, y0), 1, 1, color=colour, linewidth=0))
    if token_windows is not None and mask is not None:
        # dropped tokens first so the kept ones stay visible on top
        for keep, colour, width in ((False, DROPPED_COLOUR, 0.8), (True, KEPT_COLOUR, 1.4)):
            for window in token_windows[np.asarray(mask, dtype=bool) == keep]:
                if np.isnan(window).any():
                    continue
                axes.plot(window[:, 0], window[:, 1], color=colour, linewidth=width, alpha=0.9)
                axes.plot(window[-1, 0], window[-1, 1], marker="o", markersize=2.0, color=colour)
    for trajectory, success in zip(trajectories, list(successes) + [False] * len(trajectories)):
        colour = SUCCESS_COLOUR if success else FAILURE_COLOUR
        axes.plot(trajectory[:, 0], trajectory[:, 1], color=colour, linewidth=1.0, alpha=0.7)
    if demo is not None:
        axes.plot(demo[:, 0], demo[:, 1], color=DEMO_COLOUR, linewidth=2.5, linestyle="--")
    if layout.start is not None:
        axes.plot(*layout.cell_to_xy(layout.start), marker="s", markersize=9, color="black")
    goal_xy = goal if goal is not None else (layout.cell_to_xy(layout.goal) if layout.goal is not None else None)
    if goal_xy is not None:
        axes.plot(*goal_xy, marker="*", markersize=16, color="gold", markeredgecolor="black")
    axes.set_xlim(-half_w, half_w)
    axes.set_ylim(-half_h, half_h)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    legend = [
        Line2D([], [], color=WALL_COLOUR, linewidth=6, label="wall"),
        Line2D([], [], color=BLOCKED_COLOUR, linewidth=6, label="new wall (target world)"),
        Line2D([], [], color=DEMO_COLOUR, linewidth=2.5, linestyle="--", label="demo"),
        Line2D([], [], color=KEPT_COLOUR, label="skill kept by the mask"),
        Line2D([], [], color=DROPPED_COLOUR, label="skill dropped"),
        *AGENT_LEGEND,
    ]
    return _finish(figure, axes, legend, title, Path(path))


def picture_transfer_figure(
    picture: np.ndarray,
    to_pixel: Callable[[np.ndarray], np.ndarray],
    path: str | Path,
    demo: np.ndarray | None = None,
    trajectories: Sequence[np.ndarray] = (),
    successes: Sequence[bool] = (),
    title: str = "",
) -> Path:
    """Draw one variant on the world's own picture and save it as a PNG (written whole or not at all).

    Args:
        picture: (H, W, 3) uint8, the variant's rendered picture (the house's map).
        to_pixel: the task's calibration, (K, P) world positions -> (K, 2) pixels (u right, v down).
        path: output PNG.
        demo: (K, P) demo positions.
        trajectories: (T, P) agent paths; ``successes`` colours them (reached the goal or not).
        title: figure title.
    """
    height, width = picture.shape[:2]
    figure = Figure(figsize=(width / FIGURE_DPI + 1.8, height / FIGURE_DPI + 0.5), dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    axes.imshow(picture[..., :3])
    for trajectory, success in zip(trajectories, list(successes) + [False] * len(trajectories)):
        pixels = to_pixel(np.asarray(trajectory))
        colour = SUCCESS_COLOUR if success else FAILURE_COLOUR
        axes.plot(pixels[:, 0], pixels[:, 1], color=colour, linewidth=1.0, alpha=0.7)
    if demo is not None:
        pixels = to_pixel(np.asarray(demo))
        axes.plot(pixels[:, 0], pixels[:, 1], color=DEMO_COLOUR, linewidth=2.5, linestyle="--")
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.set_axis_off()
    legend = [
        Line2D([], [], color=DEMO_COLOUR, linewidth=2.5, linestyle="--", label="demo"),
        *AGENT_LEGEND,
    ]
    return _finish(figure, axes, legend, title, Path(path))
