"""The house world family end to end: `mstt train` of configs/house/tiny.yaml (collecting its source data first), then
`mstt eval` of mstt, demo_tracker, bc and DARA in the blocked house from its scripted demo. The house's actions are
discrete: the skills and DARA's classifiers see them as one-hot rows, the tracker, BC (argmax) and DARA's categorical
IQL policy give the env MiniWorld's integers."""

from __future__ import annotations

import json
from pathlib import Path

from mstt.skills.iql import IQLLearner

from repo_paths import CONFIGS
from tiny_experiment import run_cli

METHODS = ["mstt", "demo_tracker", "bc", "dara_5pct"]


def test_tiny_house_trains_and_evaluates(tmp_path: Path) -> None:
    experiment = tmp_path / "house.yaml"
    experiment.write_text(
        f"extends: {CONFIGS / 'house/tiny.yaml'}\n"
        f"source: {CONFIGS / 'house/source.yaml'}\n"
        f"targets: [{CONFIGS / 'house/blocked.yaml'}]\n"
        f"data: {{root: {tmp_path / 'data'}}}\n"
        "dara: {shares: [0.05], classifiers: {hidden: 16, layers: 1, steps: 10, batch_size: 32}, "
        "iql: {hidden: 16, layers: 1, steps: 10, batch_size: 32}}\n"
    )
    run, out = tmp_path / "run", tmp_path / "eval.json"
    trained = run_cli(["train", str(experiment), "--run", str(run), "--device", "cpu", "--quiet"])
    assert trained.code == 0, trained.err
    data = json.loads((run / "data.json").read_text())
    assert data["transitions"] == 6000 and data["step_length"] > 0  # a turn on the spot is no step
    dara = IQLLearner.from_pretrained(run / "dara-blocked-5pct")
    assert (dara.action_kind, dara.action_dim) == ("discrete", 3)  # one Q output and one logit per MiniWorld action
    evaluated = run_cli(["eval", str(experiment), "--run", str(run), "--episodes", "2", "--json", str(out),
                         "--methods", *METHODS, "--quiet"])  # fmt: skip
    assert evaluated.code == 0, evaluated.err
    result = json.loads(out.read_text())
    assert result["task"] == "house" and list(result["variants"]) == ["blocked"]
    assert list(result["variants"]["blocked"]) == METHODS
    assert result["variants"]["blocked"]["mstt"]["mask_size"] > 0
    # the house reports the steps walls and furniture stopped the body
    assert all(
        r["collisions_mean"] is not None and r["collisions_mean"] >= 0 for r in result["variants"]["blocked"].values()
    )
    assert result["demos"]["blocked"]["source"] == "scripted"
