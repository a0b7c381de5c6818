"""The transfer figure: token mean windows, and a PNG that shows what the mask keeps and drops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mstt.agent.core.maze_layout import MazeLayout
from mstt.agent.experiments.evaluate import results_table
from mstt.agent.experiments.figures import (
    BLOCKED_COLOUR,
    DEMO_COLOUR,
    DROPPED_COLOUR,
    FAILURE_COLOUR,
    KEPT_COLOUR,
    SUCCESS_COLOUR,
    maze_transfer_figure,
    picture_transfer_figure,
    token_mean_windows,
)
from mstt.agent.worlds import load_config


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def _has_colour(path: Path, hex_colour: str, tolerance: int = 12) -> bool:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return bool((np.abs(pixels - _rgb(hex_colour)).max(axis=-1) <= tolerance).any())


def test_token_mean_windows_average_per_token_and_mark_unseen_ones() -> None:
    windows = np.array([[[0.0, 0.0], [1.0, 0.0]], [[2.0, 0.0], [3.0, 0.0]], [[5.0, 5.0], [5.0, 6.0]]])
    means = token_mean_windows(windows, np.array([0, 0, 2]), num_skills=3)
    assert np.allclose(means[0], [[1.0, 0.0], [2.0, 0.0]])
    assert np.isnan(means[1]).all()
    assert np.allclose(means[2], windows[2])


def test_figure_draws_kept_and_dropped_skills_and_the_new_walls(configs: Path, tmp_path: Path) -> None:
    layout = MazeLayout(load_config(configs / "maze/t1.yaml"))
    start, goal = layout.cell_to_xy(layout.start), layout.cell_to_xy(layout.goal)
    line = np.linspace(start, goal, 16)  # (16, 2)
    token_windows = np.stack([line, line + [0.0, 1.0], line - [0.0, 1.0]])
    kept = maze_transfer_figure(
        layout, tmp_path / "kept.png", demo=line, token_windows=token_windows,
        mask=np.array([True, False, False]), trajectories=[line], successes=[True],
    )  # fmt: skip
    assert _has_colour(kept, KEPT_COLOUR) and _has_colour(kept, DROPPED_COLOUR)
    assert _has_colour(kept, BLOCKED_COLOUR)  # T1 walls off two routes
    none_kept = maze_transfer_figure(
        layout, tmp_path / "none.png", token_windows=token_windows, mask=np.zeros(3, dtype=bool)
    )
    pixels = np.asarray(Image.open(none_kept).convert("RGB"), dtype=int)
    legend_free = pixels[:, : pixels.shape[1] * 2 // 3]  # the map, left of the legend
    assert not (np.abs(legend_free - _rgb(KEPT_COLOUR)).max(axis=-1) <= 12).any()
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_picture_figure_draws_demo_and_paths_where_the_calibration_puts_them(tmp_path: Path) -> None:
    picture = np.full((120, 200, 3), 255, dtype=np.uint8)  # a blank 200 x 120 map, 10 pixels per world unit
    demo = np.stack([np.linspace(1, 19, 30), np.full(30, 2.0)], axis=1)  # along the top, v = 20
    reached, lost = demo + [0.0, 1.0], demo + [0.0, 8.0]  # v = 30 and v = 100
    figure = picture_transfer_figure(
        picture, lambda xz: np.asarray(xz) * 10.0, tmp_path / "house.png", demo=demo, trajectories=[reached, lost],
        successes=[True, False], title="zone: mstt",
    )  # fmt: skip
    pixels = np.asarray(Image.open(figure).convert("RGB"), dtype=int)
    legend_free = pixels[:, : pixels.shape[1] // 2]  # the map, left of the legend

    def rows(colour: str) -> np.ndarray:
        """Rows of the map holding the colour at any strength over white (lines are blended and antialiased)."""
        shade, target = 255.0 - legend_free, 255.0 - _rgb(colour)
        cosine = shade @ target / (np.linalg.norm(shade, axis=-1) * np.linalg.norm(target) + 1e-9)
        return np.nonzero(((cosine > 0.99) & (shade.sum(axis=-1) > 60)).any(axis=1))[0]

    demo_v, success_v, failure_v = (np.median(rows(c)) for c in (DEMO_COLOUR, SUCCESS_COLOUR, FAILURE_COLOUR))
    # v grows downwards: the reached path 10 map pixels below the demo, the lost one 80
    assert 3 < success_v - demo_v < 20
    assert failure_v - demo_v > 50
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_results_table_has_one_row_per_variant_and_method() -> None:
    metrics = {"goal_rate": 0.5, "goal_ci95": [0.2, 0.8], "return_mean": 3.0, "failure_rate": 0.1,
               "cost_mean": 1.0, "steps_mean": None, "mask_size": 7}  # fmt: skip
    output = {"variants": {"t1": {"mstt": metrics, "bc": {**metrics, "mask_size": None}}}}
    rows = results_table(output).splitlines()
    assert len(rows) == 4 and rows[2].split()[:3] == ["t1", "mstt", "50.0%"]
    assert rows[3].split()[-1] == "-"
