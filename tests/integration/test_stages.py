"""The stage table and its one runner (agent/experiments/stages.py): toy stages for the runner's rules, then every
registered training stage of `mstt train` and `mstt offline` on the tiny configs (train, load back exact, rerun
skips)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import mstt.agent.experiments.train as train_module
from mstt.agent.core.config import parse_set
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.offline import ALL_OFFLINE_METHODS, load_offline_experiment, offline_stages, train_offline
from mstt.agent.experiments.stages import (
    REPORT_HEADER,
    Stage,
    StageInputs,
    Trained,
    all_done,
    format_report,
    train_stages,
)
from mstt.agent.experiments.train import Models, RunMismatchError, train, train_only, transfer_stages

from repo_paths import CONFIGS, ROOT

# --- the runner, on toy stages ---------------------------------------------------------------------------------


def _toy(name: str, needs: tuple[str, ...] = (), report: Any = None) -> Stage[int]:
    def fit(inputs: StageInputs[int]) -> Trained:
        value = inputs.data + sum(inputs.models[n] for n in needs)
        inputs.folder.mkdir(parents=True)
        (inputs.folder / "config.json").write_text(json.dumps({"value": value}))
        return Trained(value, report if report is not None else {"value": value, "seconds": -1.0}, "cpu")

    return Stage(name, fit, lambda run: json.loads((run / name / "config.json").read_text())["value"], needs)


def test_runner_trains_in_order_then_loads_without_data(tmp_path: Path) -> None:
    stages = [_toy("a"), _toy("b", needs=("a",))]
    calls: list[int] = []

    def data() -> int:
        calls.append(1)
        return 10

    assert train_stages(stages, tmp_path, data, 100, progress=False) == {"a": 10, "b": 20}
    assert calls == [1]  # the data are read once, for every stage that trains
    assert all_done(stages, tmp_path)
    report = json.loads((tmp_path / "reports" / "b.json").read_text())
    assert tuple(report)[: len(REPORT_HEADER)] == REPORT_HEADER
    assert report["stage"] == "b" and report["value"] == 20 and report["device"] == "cpu"
    assert report["seconds"] >= 0.0 and report["torch_threads"] == torch.get_num_threads()  # the stage's, not -1

    before = (tmp_path / "reports" / "b.json").stat().st_mtime_ns
    assert train_stages(stages, tmp_path, lambda: pytest.fail("a finished run reads no data"), 100, False) == {
        "a": 10, "b": 20,
    }  # fmt: skip
    assert (tmp_path / "reports" / "b.json").stat().st_mtime_ns == before


def test_runner_trains_only_the_stages_not_done(tmp_path: Path) -> None:
    stages = [_toy("a"), _toy("b", needs=("a",))]
    train_stages(stages[:1], tmp_path, lambda: 1, 100, False)
    assert train_stages(stages, tmp_path, lambda: 5, 100, False) == {"a": 1, "b": 6}  # a loaded, b trained on it


def test_a_stage_listed_before_what_it_needs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"stage b needs \['a'\]"):
        train_stages([_toy("b", needs=("a",)), _toy("a")], tmp_path, lambda: 1, 100, False)


def test_printed_report_summarises_lists_and_nested_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    losses = [float(i) for i in range(200, 0, -1)]
    train_stages([_toy("a", report={"td_losses": losses, "high": {"q_loss": 0.5}})], tmp_path, lambda: 1, 100, True)
    out = capsys.readouterr().out
    assert out.startswith("a: ") and "cpu" in out
    assert "td_losses=[200: first 200, last 1, min 1]" in out and "high.q_loss=0.5" in out
    assert len(out.splitlines()) <= 4
    saved = json.loads((tmp_path / "reports" / "a.json").read_text())
    assert saved["td_losses"] == losses  # the file keeps every number
    assert format_report(saved) == out.rstrip("\n")


# --- every registered stage on the tiny configs ------------------------------------------------------------------


def _state(model: Any) -> dict[str, torch.Tensor]:
    if isinstance(model, torch.nn.Module):
        return model.state_dict()
    # DDSAgent: its two saved modules
    return {**{f"skills.{k}": v for k, v in model.skills.state_dict().items()},
            **{f"high.{k}": v for k, v in model.high_level.state_dict().items()}}  # fmt: skip


def _assert_same(a: Any, b: Any, name: str) -> None:
    first, second = _state(a), _state(b)
    assert first.keys() == second.keys(), name
    for key in first:
        assert torch.equal(first[key].cpu(), second[key].cpu()), f"{name}: {key}"


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stages")
    path = root / "exp.yaml"
    path.write_text(
        f"extends: {CONFIGS / 'maze/tiny.yaml'}\nsource: {CONFIGS / 'maze/source.yaml'}\n"
        f"targets: [{CONFIGS / 'maze/t1.yaml'}]\ndemos: {{t1: {CONFIGS / 'demos/maze_t1.json'}}}\n"
        f"data: {{root: {root / 'data'}, transitions: 3000}}\n"
    )
    return path


def test_every_transfer_stage_round_trips(tiny_experiment: Path, tmp_path: Path) -> None:
    experiment = load_experiment(tiny_experiment)
    stages = transfer_stages(experiment)
    assert [s.name for s in stages] == [
        "tokenizer", "critic", "generator", "bc", "dds_skills", "diffuser",
        "dara-t1-5pct-classifiers", "dara-t1-5pct", "dara-t1-10pct-classifiers", "dara-t1-10pct",
    ]  # fmt: skip
    run = tmp_path / "run"
    trained = train(experiment, run, progress=False)
    for stage in stages:
        assert stage.done(run), stage.name
        report = json.loads((run / "reports" / f"{stage.name}.json").read_text())
        assert tuple(report)[: len(REPORT_HEADER)] == REPORT_HEADER and report["stage"] == stage.name
        if not stage.name.endswith("-classifiers"):  # the classifiers only shape DARA's rewards: not kept in Models
            _assert_same(_model(trained, stage.name), stage.load(run), stage.name)
    # the smaller target share is a prefix of the larger
    shares = [json.loads((run / "reports" / f"dara-t1-{n}pct.json").read_text())["target_transitions"] for n in (5, 10)]
    assert shares == [150, 300]
    reports = {p: p.stat().st_mtime_ns for p in (run / "reports").glob("*.json")}
    again = train(experiment, run, progress=False)  # finished: loaded, nothing written
    assert {p: p.stat().st_mtime_ns for p in (run / "reports").glob("*.json")} == reports
    for stage in stages:
        if not stage.name.endswith("-classifiers"):
            _assert_same(_model(trained, stage.name), _model(again, stage.name), stage.name)


def _model(models: Models, stage: str) -> Any:
    return models.dara[stage] if stage.startswith("dara-") else getattr(models, stage)


def test_only_the_named_stages_train_and_a_changed_baseline_is_refused(tiny_experiment: Path, tmp_path: Path) -> None:
    experiment = load_experiment(tiny_experiment)
    run = tmp_path / "run"
    models = train_only(experiment, run, ["dara-t1-5pct"], progress=False)
    assert sorted(models) == ["dara-t1-5pct", "dara-t1-5pct-classifiers"]
    assert sorted(p.name for p in run.iterdir() if (p / "config.json").exists()) == sorted(models)
    with pytest.raises(ValueError, match=r"no stage\(s\) \['foo'\]"):
        train_only(experiment, run, ["foo"], progress=False)
    changed = load_experiment(tiny_experiment, [parse_set("dara.iql.steps=11")])
    with pytest.raises(RunMismatchError, match="dara-t1-5pct was trained with steps=10.*steps=11"):
        train_only(changed, run, ["dara-t1-5pct"], progress=False)


def test_every_offline_stage_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "offline.yaml"
    path.write_text(f"extends: {CONFIGS / 'offline/tiny.yaml'}\nsource: {CONFIGS / 'maze/umaze.yaml'}\n"
                    f"data: {{root: {tmp_path / 'data'}, transitions: 3000}}\n")  # fmt: skip
    experiment = load_offline_experiment(path)
    stages = offline_stages(experiment, list(ALL_OFFLINE_METHODS))
    assert [s.name for s in stages] == list(ALL_OFFLINE_METHODS)
    run = tmp_path / "run"
    trained = train_offline(experiment, run, progress=False)
    assert all_done(stages, run)
    for stage in stages:
        report = json.loads((run / "reports" / f"{stage.name}.json").read_text())
        assert tuple(report)[: len(REPORT_HEADER)] == REPORT_HEADER and report["stage"] == stage.name
        _assert_same(trained.of(stage.name), stage.load(run), stage.name)
    assert json.loads((run / "reports" / "dds.json").read_text())["skills"]["codebook_size"] == 4
    reports = {p: p.stat().st_mtime_ns for p in (run / "reports").glob("*.json")}
    train_offline(experiment, run, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (run / "reports").glob("*.json")} == reports


@pytest.mark.parametrize("name", ["maze", "fetch"])
def test_the_trained_runs_of_the_repository_count_as_finished(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs trained before the stage table (reports in the older format) are finished runs: checked and loaded,
    never retrained."""

    run = ROOT / "runs" / name
    if not (run / "run.json").exists():
        pytest.skip(f"{run} is not in this checkout")
    experiment = load_experiment(CONFIGS / name / "mstt.yaml")
    assert all_done(transfer_stages(experiment), run)
    monkeypatch.setattr(train_module, "load_models", lambda folder, device=None: ("loaded", folder))
    assert train(experiment, run, progress=False) == ("loaded", run)
