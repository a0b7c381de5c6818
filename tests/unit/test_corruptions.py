"""Imperfect demos: every named corruption is seeded, keeps the demo's world, and does what its name says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mstt.agent.cli import main
from mstt.agent.core.demo import Demo
from mstt.agent.experiments.corruptions import CORRUPTIONS, DEFAULT_LEVELS, corrupt, parse_corruption
from mstt.agent.worlds import load_config, make_task

from repo_paths import CONFIGS


@pytest.fixture(scope="module")
def t1():  # type: ignore[no-untyped-def]
    return make_task(load_config(CONFIGS / "maze/t1.yaml"))


@pytest.fixture(scope="module")
def demo() -> Demo:
    return Demo.load(CONFIGS / "demos/maze_t1.json")


def _length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_every_corruption_is_seeded_and_keeps_the_world(name: str, t1, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    once, again = corrupt(demo, name, t1, seed=3), corrupt(demo, name, t1, seed=3)
    assert once == again
    assert (once.task, once.name, once.variant) == (demo.task, demo.name, demo.variant)
    assert once != demo


def test_corner_cut_and_sparse_keep_few_points_on_straight_segments(t1, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    cut = corrupt(demo, "corner_cut=3", t1).positions
    assert np.allclose(cut[0], demo.positions[0]) and np.allclose(cut[-1], demo.positions[-1])
    # 3 cells of route apart: shorter where they cut a corner
    chords = np.linalg.norm(np.diff(cut[:-1], axis=0), axis=1)
    assert np.all(chords <= 3.0 + 1e-6) and np.all(chords > 2.0) and np.sum(np.isclose(chords, 3.0, atol=0.01)) >= 2
    assert len(corrupt(demo, "sparse=7", t1).points) == 7


def test_gap_cuts_a_stretch_out_as_a_break(t1, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    gapped = corrupt(demo, "gap=0.2", t1, seed=1)
    (first, _), (second, _) = gapped.pieces()
    missing = np.linalg.norm(second[0] - first[-1])
    assert gapped.breaks == [len(first)] and missing > 0.1 * _length(demo.positions)


def test_detour_walks_back_and_forth_on_the_route(t1, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    detoured = corrupt(demo, "detour=2", t1, seed=0).positions
    assert _length(detoured) == pytest.approx(_length(demo.positions) + 4.0, abs=0.2)


def test_calibration_shifts_and_scales_and_time_warp_keeps_the_geometry(t1, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    shifted = corrupt(demo, "calibration=0.05", t1, seed=0).positions
    assert np.linalg.norm(shifted.mean(axis=0) - demo.positions.mean(axis=0)) > 0.2
    warped = corrupt(demo, "time_warp=0.5", t1, seed=0)
    assert warped.points == demo.points and warped.timestamps != demo.timestamps
    assert np.all(np.diff(warped.timestamps) > 0)


def test_jitter_wobbles_smoothly_at_the_requested_size(t1, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    offset = corrupt(demo, "jitter=0.1", t1, seed=0).positions - demo.positions
    assert np.std(offset) == pytest.approx(0.1, rel=0.3)
    assert np.allclose(offset[[0, -1]], 0.0)
    assert np.abs(np.diff(offset, axis=0)).max() < 0.02  # correlated along the route, not per-point noise


@pytest.mark.parametrize("text", ["nope", "gap=abc", "gap=-1", "gap=inf"])
def test_bad_corruption_names_and_levels_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="corruption"):
        parse_corruption(text)


def test_a_bare_name_means_its_default_level() -> None:
    assert parse_corruption("corner_cut").level == DEFAULT_LEVELS["corner_cut"]


def test_demo_make_writes_a_corrupted_demo_and_refuses_one_the_check_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    out = tmp_path / "cut.json"
    assert main(["demo-make", str(CONFIGS / "maze/t1.yaml"), "--out", str(out), "--corrupt", "corner_cut=3"]) == 0
    assert "clips wall cell" in capsys.readouterr().err
    assert 5 <= len(Demo.load(out).points) <= 10 and Demo.load(out).timestamps is None
    refused = tmp_path / "shifted.json"
    command = ["demo-make", str(CONFIGS / "maze/t1.yaml"), "--out", str(refused), "--corrupt", "calibration=0.1"]
    assert main(command) == 2
    assert "lie where no agent can be" in capsys.readouterr().err and not refused.exists()
