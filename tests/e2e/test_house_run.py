"""`mstt run` in the house: configs/house/tiny.yaml trained into a temporary folder, then a sentence and the blocked
house's map picture -> a demo read by the geometric backend -> the agent acts; report.json and an episode.gif whose
frames show the agent's own view beside the map. `--policy demo_tracker --demo FILE` reuses that demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mstt.agent.core.demo import Demo

from repo_paths import CONFIGS
from tiny_experiment import run_cli

MAP_SIZE = 480
"""configs/house: render.width and render.height of the top-down map."""
EGO_WIDTH, EGO_HEIGHT = 80, 60
"""configs/house: egocentric.width and egocentric.height."""


EPISODE_STEPS = 200
"""Steps of the blocked house's episode here: the demo tracker reaches the red ball in about 120."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("house-run")
    blocked = folder / "blocked.yaml"
    blocked.write_text(f"extends: {CONFIGS / 'house/blocked.yaml'}\nepisode_steps: {EPISODE_STEPS}\n")
    experiment = folder / "house.yaml"
    experiment.write_text(
        f"extends: {CONFIGS / 'house/tiny.yaml'}\n"
        f"source: {CONFIGS / 'house/source.yaml'}\n"
        f"targets: [{blocked}]\n"
        f"data: {{root: {folder / 'data'}}}\n"
    )
    run = folder / "run"
    trained = run_cli(["train", str(experiment), "--run", str(run), "--device", "cpu", "--quiet"])
    assert trained.code == 0, trained.err
    return experiment, run


@pytest.fixture(scope="module")
def ran(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out folder of `mstt run "go to the red ball"` with the default policy and perception."""
    experiment, run = trained
    out = tmp_path_factory.mktemp("house-run-out")
    result = run_cli(["run", "go to the red ball", "--config", str(experiment), "--run", str(run), "--out", str(out)])
    assert result.code == 0, result.err
    return out


def test_run_reports_the_goal_and_the_perceived_demo(ran: Path) -> None:
    report = json.loads((ran / "report.json").read_text())
    assert report["variant"] == "blocked" and report["perception"] == "geometric" and report["policy"] == "mstt"
    assert report["goal"] == "the red ball in the kitchen" and report["goal_position"] == [14.5, 6.5]
    assert report["mask_size"] > 0 and report["demo_points"] >= 3
    assert report["video"] == "episode.gif" and (ran / report["overlay_png"]).is_file()
    demo = Demo.load(ran / report["demo_file"])
    assert demo.task == "house" and demo.variant == "blocked"


def test_video_shows_the_agents_view_beside_the_map(ran: Path) -> None:
    gif = Image.open(ran / "episode.gif")
    assert gif.size == (MAP_SIZE * EGO_WIDTH // EGO_HEIGHT + MAP_SIZE, MAP_SIZE) and gif.n_frames > 1


def test_demo_tracker_follows_a_demo_file(trained: tuple[Path, Path], ran: Path, tmp_path: Path) -> None:
    experiment, run = trained
    args = ["--config", str(experiment), "--run", str(run), "--policy", "demo_tracker"]
    result = run_cli(["run", "go to the red ball", *args, "--demo", str(ran / "demo.json"), "--out", str(tmp_path)])
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["perception"] == "demo file" and report["policy"] == "demo_tracker"
    assert report["success"] and not report["failed"]  # the demo keeps clear of the closed door and the wardrobe
