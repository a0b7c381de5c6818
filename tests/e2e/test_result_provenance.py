"""The result JSONs that need a trained transfer run carry the provenance block with no absolute path: `mstt eval`,
`mstt run`'s report.json, `mstt bench plan` and `mstt bench tokens` (the others: tests/integration/test_provenance.py).
The run is the e2e layer's shared tiny run (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mstt.agent.core.provenance as provenance_module
import mstt.agent.experiments.evaluate as evaluate_module
from mstt.agent.cli import main

from result_checks import absolute_paths, provenance_problems, then_edit_checkout


def _written(path: Path) -> dict:
    result = json.loads(path.read_text())
    assert provenance_problems(result) == []
    assert absolute_paths(result) == []
    return result


def test_eval_json(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    out = tmp_path / "eval.json"
    assert main(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--methods", "bc", "--json", str(out),
                 "--set", "eval.seed=5", "--quiet"]) == 0  # fmt: skip
    block = _written(out)["provenance"]
    # the resolved config: the override applied, the variant configs it names included
    assert block["config"]["experiment"]["eval"]["seed"] == 5 and block["seeds"] == {"experiment": 0, "eval": 5}
    assert set(block["config"]["targets"]) == {"t1"} and block["device"] == "cpu"


def test_run_report_json(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    out = tmp_path / "agent"
    assert main(["run", "go to the red ball", "--config", str(experiment), "--run", str(run), "--out", str(out),
                 "--policy", "demo_tracker"]) == 0  # fmt: skip
    report = _written(out / "report.json")
    for field in ("demo_file", "overlay_png", "video"):  # named relative to the report's folder
        assert (out / report[field]).is_file(), field


def test_bench_plan_and_tokens_json(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny_run
    assert main(["bench", "plan", str(experiment), "--run", str(run), "--candidates", "4", "--repeats", "1",
                 "--json", str(tmp_path / "plan.json")]) == 0  # fmt: skip
    plan = _written(tmp_path / "plan.json")
    assert plan["provenance"]["config"]["settings"]["candidates"] == 4
    assert main(["bench", "tokens", str(experiment), "--run", str(run), "--episodes", "1",
                 "--json", str(tmp_path / "tokens.json")]) == 0  # fmt: skip
    assert _written(tmp_path / "tokens.json")["provenance"]["config"]["bench"] == "tokens"


def test_eval_json_names_the_checkout_it_started_from(
    tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout that changes while the episodes run (a long evaluation beside other work) does not change the
    provenance: it is read before the first episode."""
    experiment, run = tiny_run
    state = {"dirty": False}
    monkeypatch.setattr(provenance_module, "git_state", lambda folder: {"commit": "0" * 40, "dirty": state["dirty"]})
    monkeypatch.setattr(evaluate_module, "rollout", then_edit_checkout(evaluate_module.rollout, state))
    out = tmp_path / "eval.json"
    assert main(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--methods", "bc", "--json", str(out),
                 "--quiet"]) == 0  # fmt: skip
    assert state["dirty"] and _written(out)["provenance"]["git"] == {"commit": "0" * 40, "dirty": False}
