"""Every method of the eval table (agent/methods.py) runs through `mstt eval` on the tiny config, and the table is
what eval accepts. The run is the e2e layer's shared tiny run (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mstt.agent.cli import main
from mstt.agent.experiments.methods import DEFAULT_METHODS, METHODS

from repo_paths import CONFIGS


def test_every_registered_method_evaluates(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    out = tmp_path / "eval.json"
    assert main(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--json", str(out),
                 "--methods", *METHODS, "--quiet"]) == 0  # fmt: skip
    results = json.loads(out.read_text())["variants"]["t1"]
    assert list(results) == list(METHODS)
    for name, metrics in results.items():
        planned = METHODS[name].mask != "none"
        assert (metrics["mask_size"] is not None) == planned, name
        assert (metrics["fallback_rate"] is not None) == (planned or METHODS[name].controller == "diffuser"), name
    assert results["mask_only"]["mask_size"] == results["mstt"]["mask_size"]


def test_a_corrupted_demo_is_checked_and_recorded(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    out = tmp_path / "eval.json"
    assert main(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--json", str(out),
                 "--methods", "demo_tracker", "--corrupt", "corner_cut=3", "--quiet"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["corruption"] == "corner_cut=3"
    assert any("clips wall cell" in w for w in result["demos"]["t1"]["warnings"])
    # a corruption the acceptance check refuses is reported as such; nothing runs on it
    assert main(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--json", str(out),
                 "--methods", "demo_tracker", "--corrupt", "calibration=0.1", "--quiet"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert "lie where no agent can be" in result["demos"]["t1"]["refused"] and result["variants"]["t1"] == {}


def test_unknown_methods_are_refused_with_the_table(
    tiny_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    experiment, run = tiny_run
    assert main(["eval", str(experiment), "--run", str(run), "--methods", "foo", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown method(s) ['foo']" in err and "demo_tracker" in err


def test_default_methods_need_no_optional_stage() -> None:
    assert "mstt_dds" not in DEFAULT_METHODS and "demo_tracker" in DEFAULT_METHODS


def test_the_agent_loop_runs_a_method_of_the_table_on_a_given_demo(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    demo_file = CONFIGS / "demos/maze_t1.json"
    out = tmp_path / "agent"
    assert main(["run", "go to the goal", "--config", str(experiment), "--run", str(run), "--policy", "demo_tracker",
                 "--demo", str(demo_file), "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["policy"] == "demo_tracker" and report["perception"] == "demo file"
    assert json.loads((out / "demo.json").read_text())["points"] == json.loads(demo_file.read_text())["points"]
    assert not report["failed"] and (out / "episode.gif").exists()
