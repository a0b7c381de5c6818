"""Output locations: every writing command checks its outputs before the work starts and refuses an unwritable one
with one line (exit 2); a finished run is trained again without a write; killed collections leave no staging
folders for long; a damaged training checkpoint names its file and how to start the stage again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mstt.agent.experiments.train as train_module
from mstt.agent.cli import main
from mstt.agent.core.io import UnwritablePathError, check_writable
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.data import STAGING_PREFIX, collect
from mstt.skills.bc import BCConfig, train_bc
from mstt.skills.training import DamagedCheckpointError, LoopSettings

from repo_paths import CONFIGS


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder nothing can be written in: read-only by its mode, or, where modes do not stop writes (root), a path
    whose parent is a regular file."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        yield folder
    else:
        (folder / "probe").unlink()
        regular = tmp_path / "a-file"
        regular.write_text("not a folder\n")
        yield regular
    finally:
        folder.chmod(0o755)


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"extends: {CONFIGS / 'maze/tiny.yaml'}\nsource: {CONFIGS / 'maze/source.yaml'}\n"
        f"targets: [{CONFIGS / 'maze/t1.yaml'}]\n"
    )
    return path


def _commands(experiment: Path, tmp_path: Path, bad: Path) -> dict[str, tuple[list[str], str]]:
    """command name -> (argv with one output under ``bad``, the option the refusal must name)."""
    t1, source, run = str(CONFIGS / "maze/t1.yaml"), str(CONFIGS / "maze/source.yaml"), str(tmp_path / "run")
    offline = str(CONFIGS / "offline/tiny.yaml")
    return {
        "train": (["train", str(experiment), "--run", str(bad / "run"), "--quiet"], "--run"),
        "eval --json": (["eval", str(experiment), "--run", run, "--json", str(bad / "m.json")], "--json"),
        "eval --figures": (["eval", str(experiment), "--run", run, "--figures", str(bad / "fig")], "--figures"),
        "collect": (["collect", source, "--out", str(bad / "data"), "--transitions", "100", "--quiet"], "--out"),
        "demo-make": (["demo-make", t1, "--out", str(bad / "t1.json")], "--out"),
        "render": (["render", t1, "--out", str(bad / "t1.png")], "--out"),
        "run": (["run", "go to the red ball", "--config", str(experiment), "--run", run, "--out", str(bad / "a")],
                "--out"),  # fmt: skip
        "offline --json": (["offline", offline, "--run", run, "--json", str(bad / "o.json")], "--json"),
        "offline --run": (["offline", offline, "--run", str(bad / "run"), "--quiet"], "--run"),
        "theory --png": (["theory", "--png", str(bad / "t.png")], "--png"),
    }


COMMANDS = ["train", "eval --json", "eval --figures", "collect", "demo-make", "render", "run", "offline --json",
            "offline --run", "theory --png"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_unwritable_output_is_refused_before_the_work(
    experiment: Path, tmp_path: Path, unwritable: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, command: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # data.root 'data' of the tiny configs lands here if anything collects
    argv, option = _commands(experiment, tmp_path, unwritable)[command]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mstt ")]
    assert len(lines) == 1 and option in lines[0] and str(unwritable) in lines[0], lines
    # refused before any work: no dataset collected, nothing trained, no run folder made
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_check_writable_accepts_a_new_nested_location_without_creating_it(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    assert check_writable(target, "--json", "file") == target
    assert not (tmp_path / "a").exists()


def test_check_writable_refuses_a_folder_given_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(UnwritablePathError, match="is a folder"):
        check_writable(tmp_path, "--json", "file")


# --- a finished run is not written ---------------------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


def test_train_on_a_finished_run_writes_nothing(
    experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run folder that holds every stage: train only checks the fingerprint and loads the models."""

    loaded = load_experiment(experiment)
    run = tmp_path / "run"
    for stage in train_module.trained_stages(loaded):
        (run / stage).mkdir(parents=True)
        (run / stage / "config.json").write_text("{}")
    (run / train_module.RUN_FILE).write_text(json.dumps({"fingerprint": loaded.fingerprint(), "config": "x"}))
    (run / train_module.DATA_FILE).write_text("{}")
    before = _tree(run)
    run.chmod(0o555)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_module, "load_models", lambda folder, device=None: ("models of", folder))
    try:
        assert train_module.train(loaded, run, progress=False) == ("models of", run)
    finally:
        run.chmod(0o755)
    assert _tree(run) == before
    assert not (tmp_path / "data").exists()  # the dataset was not needed either


# --- staging folders of killed collections ------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_collect_removes_staging_folders_of_killed_collections(tmp_path: Path) -> None:
    stale_old = tmp_path / f"{STAGING_PREFIX}k3j4h5g6"  # named the way collections named them before
    stale_dead = tmp_path / f"{STAGING_PREFIX}{_dead_pid()}-a1b2c3d4"
    live = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-e5f6g7h8"  # a collection still running in this process
    for folder in (stale_old, stale_dead, live):
        (folder / "mstt").mkdir(parents=True)
        (folder / "mstt" / "main_data.hdf5").write_bytes(b"partial")
    collect(make_task(load_config(CONFIGS / "maze/source.yaml")), 50, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mstt", live.name])


STARTUP_TIMEOUT_S = 600
"""How long the collect subprocess may take to import torch and MuJoCo and start staging: minutes on a loaded box."""


def test_sigterm_during_collect_leaves_no_staging_folder(tmp_path: Path) -> None:
    out = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mstt.agent.cli", "collect", str(CONFIGS / "maze/source.yaml"), "--out", str(out),
               "--transitions", "1000000", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not list(out.glob(f"{STAGING_PREFIX}*")):
            assert process.poll() is None and time.monotonic() < deadline, "collect never started staging"
            time.sleep(0.05)
        time.sleep(0.3)  # inside the expert's loop
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in stderr, stderr
    assert list(out.iterdir()) == []


# --- damaged training checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("damaged", ["objects.pt", "accelerate"])
def test_a_truncated_checkpoint_names_the_file_and_the_way_out(tmp_path: Path, damaged: str) -> None:

    rng = np.random.default_rng(0)
    obs, goals, actions = (rng.normal(size=(64, d)).astype(np.float32) for d in (4, 2, 2))
    settings = LoopSettings(directory=tmp_path / ".training" / "bc", checkpoint_every=5, progress=False)
    config = BCConfig(hidden=8, layers=1, steps=5, batch_size=16, device="cpu")
    train_bc(obs, goals, actions, config, settings)
    files = [settings.directory / "objects.pt"] if damaged == "objects.pt" else [
        p for p in (settings.directory / "accelerate").rglob("*") if p.is_file()
    ]  # fmt: skip
    for file in files:
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(DamagedCheckpointError) as err:
        train_bc(obs, goals, actions, BCConfig(**{**config.__dict__, "steps": 10}), settings)
    message = str(err.value)
    assert str(settings.directory / damaged) in message and f"delete {settings.directory}" in message
    assert isinstance(err.value, ValueError)  # the CLI's user errors: exit 2, one line
