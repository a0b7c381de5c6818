"""The tiny experiment the end-to-end tests share, trained once per session through `mstt train`, so that each e2e
test checks one part (a stage, a method, the figure, pixels, perception) of one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_experiment import TrainedRun, run_cli, write_tiny_experiment


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """`mstt train` of the tiny experiment, run once for every e2e test; its exit code is checked by the stage tests."""
    root = tmp_path_factory.mktemp("tiny")
    experiment = write_tiny_experiment(root, str(root / "data"))
    run = root / "run"
    result = run_cli(["train", str(experiment), "--run", str(run), "--device", "cpu", "--quiet"])
    return TrainedRun(experiment, run, result)


@pytest.fixture(scope="session")
def tiny_run(trained_run: TrainedRun) -> tuple[Path, Path]:
    """(experiment file, run folder) of the shared tiny run, for tests that only read it."""
    if trained_run.train.code != 0:
        pytest.fail(f"the shared tiny run did not train (exit {trained_run.train.code}):\n{trained_run.train.err}")
    return trained_run.experiment, trained_run.run


@pytest.fixture
def experiment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh tiny experiment for tests that train it themselves; data under tmp_path, found relative to the
    working directory."""
    monkeypatch.chdir(tmp_path)
    return write_tiny_experiment(tmp_path, "data")
