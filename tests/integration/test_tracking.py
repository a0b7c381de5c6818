"""Tracked training: a stage's loop logs its scalars to run/logs/STAGE.csv (and TensorBoard where installed), a resumed
stage continues its CSV without duplicate rows, `mstt plot` draws the CSVs, and an uninstalled tracker is refused."""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mstt.skills.bc as bc_module
from mstt.agent.experiments.stages import LOGS_DIR, StageInputs
from mstt.skills.bc import BCConfig, train_bc
from mstt.skills.training import TENSORBOARD_DIR, LoopSettings

from repo_paths import CONFIGS
from tiny_experiment import run_cli

STEPS = 200
"""BC steps of the tiny stage; BC logs every 50 steps, so its CSV has rows 50, 100, 150, 200."""
LOGGED_STEPS = [50, 100, 150, 200]
CONFIG = BCConfig(hidden=16, layers=1, batch_size=32, steps=STEPS, device="cpu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Killed(Exception):
    """Stands in for a kill of the training process."""


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(300, 4)).astype(np.float32)
    goals = rng.normal(size=(300, 2)).astype(np.float32)
    return obs, goals, np.tanh(obs[:, :2] - goals).astype(np.float32)


def _stage_settings(run: Path, checkpoint_every: int = 100, track: str | None = None) -> LoopSettings:
    """The loop settings the stage runner gives the stage `bc` of ``run``, with ``track`` chosen."""
    settings = StageInputs("bc", None, {}, run, checkpoint_every, progress=False).loop()
    return LoopSettings(settings.directory, settings.checkpoint_every, False, settings.log_csv, track)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _train_killed_at(step: int, run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train the stage and kill it when ``step`` steps are done (after its last checkpoint, before the next)."""
    real_run_loop = bc_module.run_loop

    def killing_run_loop(name: str, accelerator: Any, steps: int, step_fn: Callable[[int], Mapping[str, Any]],
                         *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        def step_or_die(index: int) -> Mapping[str, Any]:
            if index == step:
                raise Killed
            return step_fn(index)

        return real_run_loop(name, accelerator, steps, step_or_die, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(bc_module, "run_loop", killing_run_loop)
        with pytest.raises(Killed):
            train_bc(*_data(), CONFIG, _stage_settings(run))


def test_stage_logs_every_scalar_to_its_csv(tmp_path: Path) -> None:
    train_bc(*_data(), CONFIG, _stage_settings(tmp_path, track="none"))
    header, rows = _rows(tmp_path / LOGS_DIR / "bc.csv")
    assert header == ["step", "loss", "lr", "steps_per_s"]
    assert [int(row["step"]) for row in rows] == LOGGED_STEPS
    assert all(float(row["lr"]) == CONFIG.lr for row in rows)
    assert all(float(row["steps_per_s"]) > 0 and float(row["loss"]) > 0 for row in rows)
    assert not (tmp_path / LOGS_DIR / TENSORBOARD_DIR).exists(), "--track none must write no tracker files"


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_stage_writes_tensorboard_events_by_default(tmp_path: Path) -> None:
    train_bc(*_data(), CONFIG, _stage_settings(tmp_path))
    events = list((tmp_path / LOGS_DIR / TENSORBOARD_DIR / "bc").glob("events.out.tfevents.*"))
    assert events and all(event.stat().st_size > 0 for event in events)


def test_resumed_stage_continues_its_csv_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    train_bc(*_data(), CONFIG, _stage_settings(straight, track="none"))
    resumed = tmp_path / "resumed"
    # Killed at step 160: the CSV already holds step 150, but the checkpoint is the one of step 100.
    _train_killed_at(160, resumed, monkeypatch)
    assert [int(row["step"]) for row in _rows(resumed / LOGS_DIR / "bc.csv")[1]] == [50, 100, 150]
    train_bc(*_data(), CONFIG, _stage_settings(resumed, track="none"))
    header, rows = _rows(resumed / LOGS_DIR / "bc.csv")
    assert [int(row["step"]) for row in rows] == LOGGED_STEPS
    # resumption is bit-exact, so the continued CSV logs the losses of the uninterrupted run
    assert [row["loss"] for row in rows] == [row["loss"] for row in _rows(straight / LOGS_DIR / "bc.csv")[1]]


def test_plot_writes_one_png_per_stage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_bc(*_data(), CONFIG, _stage_settings(run, track="none"))
    out = tmp_path / "plots"
    result = run_cli(["plot", str(run), "--out", str(out)])
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["bc.png"], "one PNG per stage and no temp file left"
    assert (out / "bc.png").read_bytes().startswith(PNG_SIGNATURE)


def test_plot_of_a_run_without_logs_names_the_run(tmp_path: Path) -> None:
    result = run_cli(["plot", str(tmp_path / "empty")])
    assert result.code == 2
    assert f"{tmp_path / 'empty'}: no training logs" in result.err


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_track_wandb_without_wandb_fails_naming_the_extra(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli(["train", str(CONFIGS / "maze/tiny.yaml"), "--run", str(run), "--track", "wandb", "--quiet"])
    assert result.code == 2
    assert result.err.strip().count("\n") == 0, f"expected one line, got:\n{result.err}"
    assert "wandb" in result.err and "pip install 'mstt[wandb]'" in result.err
    assert not run.exists(), "nothing may be trained before the tracker is checked"
