"""Training stages in one table and one runner, for `mstt train` (transfer) and `mstt offline`: an experiment lists
its stages in order; `train_stages` loads the finished ones and trains the rest, resuming a stage killed midway.

A stage is done when its folder holds a config.json (``save_pretrained`` swaps the whole checkpoint in at once). Every
trained stage leaves reports/STAGE.json in one format: stage, seconds, torch_threads, device, then the stage's own
numbers. What else a run folder holds (run.json, experiment.yaml, the model card) is agent/experiments/hub.py's.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch

from mstt.agent.core.io import check_writable, plain, write_json_atomic
from mstt.agent.experiments.hub import (
    CONFIG_FILE,
    LOGS_DIR,
    REPORTS_DIR,
    RUN_FILE,
    TRAINING_DIR,
    RecordedExperiment,
    check_not_hub_snapshot,
    write_card,
    write_run_config,
    write_run_record,
)
from mstt.skills.checkpoint import CONFIG_NAME
from mstt.skills.training import LoopSettings

DONE_FILE = CONFIG_NAME
REPORT_HEADER = ("stage", "seconds", "torch_threads", "device")
"""The fields every stage report starts with; the stage's own numbers follow."""
REPORT_WIDTH = 110
"""Characters per printed report line."""

D = TypeVar("D")


class RunMismatchError(ValueError):
    """The run folder was trained under a different experiment config."""


class RunExperiment(Protocol):
    """What a run folder records of an experiment: how the command line named it, and what shapes training."""

    @property
    def label(self) -> str: ...

    def fingerprint(self) -> str: ...


def check_run_matches(
    run: Path, experiment: RunExperiment, remedy: str = "evaluate it with the config it was trained with"
) -> None:
    """Refuse a run folder trained under another experiment's training settings (or not trained at all)."""
    record = run / RUN_FILE
    if not record.exists():
        raise FileNotFoundError(f"{run} is not a run folder ({RUN_FILE} missing): run `mstt train` into it first")
    saved = json.loads(record.read_text())
    if saved.get("fingerprint") != experiment.fingerprint():
        raise RunMismatchError(
            f"{run} was trained with config {saved.get('config')} (fingerprint {saved.get('fingerprint')}); "
            f"{experiment.label} differs in its training settings (fingerprint {experiment.fingerprint()}): {remedy}"
        )


def check_run_folder(run: Path, experiment: RecordedExperiment) -> None:
    """Make ``run`` a run folder of this experiment (or check that it is one), after checking it can be written and
    is not a run downloaded from the Hub; records run.json and experiment.yaml where they are missing."""
    check_not_hub_snapshot(run)
    check_writable(run, "--run", "folder")
    run.mkdir(parents=True, exist_ok=True)
    if (run / RUN_FILE).exists():
        check_run_matches(run, experiment, remedy="use a new --run folder")
    else:
        write_run_record(run, experiment)
    if not (run / CONFIG_FILE).exists():
        write_run_config(run, experiment)


@dataclass(frozen=True)
class StageInputs(Generic[D]):
    """What a stage's train function gets."""

    name: str
    data: D
    """The experiment's training data (loaded once, before the first stage that trains)."""
    models: Mapping[str, Any]
    """The models of the stages before this one, by stage name."""
    run: Path
    checkpoint_every: int
    progress: bool

    @property
    def folder(self) -> Path:
        """Where the stage saves its model (run/NAME)."""
        return self.run / self.name

    def loop(self, name: str | None = None) -> LoopSettings:
        """The resumable loop settings of this stage, or of its sub-stage ``name`` (run/.training/NAME; its logged
        scalars in run/logs/NAME.csv)."""
        stage = name or self.name
        return LoopSettings(
            self.run / TRAINING_DIR / stage, self.checkpoint_every, self.progress, self.run / LOGS_DIR / f"{stage}.csv"
        )


@dataclass(frozen=True)
class Trained:
    """What a stage's train function returns, its model already saved."""

    model: Any
    report: Any
    """The stage's own numbers: a dict or a report dataclass (nested ones too)."""
    device: str
    """Where it trained."""


@dataclass(frozen=True)
class Stage(Generic[D]):
    """One entry of an experiment's stage table."""

    name: str
    """Its folder under the run, its report reports/NAME.json, its loop state .training/NAME."""
    train: Callable[[StageInputs[D]], Trained]
    """Train on the data (and the earlier stages' models), save the model, return it and its numbers."""
    load: Callable[[Path], Any]
    """run folder -> the saved model."""
    needs: tuple[str, ...] = ()
    """Earlier stages whose models ``train`` reads."""
    done_folder: str | None = None
    """The folder under the run whose config.json marks the stage done, when not NAME (saved last)."""

    def done(self, run: Path) -> bool:
        return (run / (self.done_folder or self.name) / DONE_FILE).exists()


def all_done(stages: Sequence[Stage[Any]], run: Path) -> bool:
    return all(stage.done(run) for stage in stages)


def train_stages(
    stages: Sequence[Stage[D]], run: Path, data: Callable[[], D], checkpoint_every: int, progress: bool
) -> dict[str, Any]:
    """Each stage in order: loaded when done, else trained (resuming its loop state) with its report written.
    ``data()`` is called once, before the first stage that trains; a run whose stages are all done reads no data (and
    is not written). After training, the run's model card (README.md) is written anew.
    Returns every stage's model by name."""
    models: dict[str, Any] = {}
    loaded: list[D] = []
    for stage in stages:
        missing = [need for need in stage.needs if need not in models]
        if missing:
            raise ValueError(f"stage {stage.name} needs {missing}: list those stages before it")
        if stage.done(run):
            models[stage.name] = stage.load(run)
            continue
        if not loaded:
            loaded.append(data())
        started = time.perf_counter()
        trained = stage.train(StageInputs(stage.name, loaded[0], dict(models), run, checkpoint_every, progress))
        report = stage_report(stage.name, trained, time.perf_counter() - started)
        write_json_atomic(report, run / REPORTS_DIR / f"{stage.name}.json")
        if progress:
            print(format_report(report))
        models[stage.name] = trained.model
    if loaded and (run / RUN_FILE).exists():
        write_card(run)
    return models


def stage_report(name: str, trained: Trained, seconds: float) -> dict[str, Any]:
    """The one report format. ``seconds`` is the whole stage (data preparation included); CPU results depend on the
    thread count (it changes the order of float reductions), so it is recorded for reproduction."""
    own = {k: v for k, v in plain(trained.report).items() if k != "seconds"}
    header = dict(zip(REPORT_HEADER, (name, seconds, torch.get_num_threads(), trained.device), strict=True))
    return {**header, **own}


def format_report(report: Mapping[str, Any]) -> str:
    """A few readable lines: the stage, its time and device, then its numbers (nested ones as a.b, lists shortened)."""
    stage, seconds, threads, device = (report[key] for key in REPORT_HEADER)
    head = f"{stage}: {seconds:.1f} s, device {device}, torch threads {threads}"
    numbers = ", ".join(f"{k}={_short(v)}" for k, v in _flat(report).items() if k not in REPORT_HEADER)
    return "\n".join([head, *textwrap.wrap(numbers, REPORT_WIDTH, initial_indent="  ", subsequent_indent="  ")])


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) for v in value):
            if len(value) == 1:
                return _short(value[0])
            return f"[{len(value)}: first {_short(value[0])}, last {_short(value[-1])}, min {_short(min(value))}]"
        return f"[{len(value)} values]"
    return str(value)
