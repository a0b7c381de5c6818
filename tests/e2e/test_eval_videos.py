"""`mstt eval --video`: one GIF per variant, method and filmed episode, drawn from the task's camera, and the same
numbers as without it (filming only renders). The run is the e2e layer's shared tiny run (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mstt.agent.cli import main

from result_checks import without_date
from tiny_experiment import TINY_T1_STEPS

METHODS = ("mstt", "mstt_dds", "bc", "demo_tracker")
"""A planner, the DDS executor, a flat policy and the route follower: every kind of controller a video draws."""
EPISODES = 3
FILMED = 2


@pytest.fixture(scope="module")
def evaluations(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(JSON without --video, JSON with it, the video folder) of the same evaluation."""
    experiment, run = tiny_run
    folder = tmp_path_factory.mktemp("videos")
    common = ["eval", str(experiment), "--run", str(run), "--episodes", str(EPISODES), "--methods", *METHODS,
              "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*common, "--json", str(folder / "plain.json")]) == 0
    assert main([*common, "--json", str(folder / "filmed.json"), "--video", str(folder / "videos"),
                 "--video-episodes", str(FILMED)]) == 0  # fmt: skip
    return folder / "plain.json", folder / "filmed.json", folder / "videos"


def test_videos_do_not_change_the_numbers(evaluations: tuple[Path, Path, Path]) -> None:
    plain, filmed = (json.loads(p.read_text()) for p in evaluations[:2])
    assert without_date(filmed) == without_date(plain)


def test_one_gif_per_variant_method_and_episode(evaluations: tuple[Path, Path, Path]) -> None:
    videos = evaluations[2]
    expected = {f"t1-{method}-ep{episode}.gif" for method in METHODS for episode in range(FILMED)}
    assert {p.name for p in videos.iterdir()} == expected  # no temporary file left behind


@pytest.mark.parametrize("method", METHODS)
def test_each_gif_is_the_episode_from_the_task_camera(evaluations: tuple[Path, Path, Path], method: str) -> None:
    render = json.loads(evaluations[0].read_text())["provenance"]["config"]["targets"]["t1"]["render"]
    with Image.open(evaluations[2] / f"t1-{method}-ep0.gif") as gif:
        frames, size = gif.n_frames, gif.size
        first = np.asarray(gif.convert("RGB"))
    assert 1 < frames <= 1 + TINY_T1_STEPS  # the start, then at most one frame per step
    assert size == (render["width"], render["height"])
    assert first.std() > 0  # a picture, not a blank frame
