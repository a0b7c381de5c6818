"""The tiny experiment of the end-to-end tests (configs/maze/tiny.yaml with a 40-step T1) and a way to call the `mstt`
command line that keeps its exit code and stderr for the test that checks them (fixtures: tests/e2e/conftest.py)."""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass
from pathlib import Path

from mstt.agent.cli import main

from repo_paths import CONFIGS

TINY_T1_STEPS = 40
"""Episode length of the tiny T1, short enough that evaluation takes seconds."""
TINY_TRANSITIONS = 3000
"""Source transitions the tiny experiment collects."""


@dataclass(frozen=True)
class CliResult:
    """What one `mstt` call returned and wrote to stderr (an unexpected exception's traceback included), kept so
    that the test checking the call, not the fixture that made it, reports a failure with its message."""

    code: int | None
    err: str


def run_cli(args: list[str]) -> CliResult:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code: int | None = main(args)
        except Exception:  # noqa: BLE001 - recorded for the test that checks this call
            code = None
            err.write(traceback.format_exc())
    return CliResult(code, err.getvalue())


def write_tiny_experiment(folder: Path, data_root: str) -> Path:
    """configs/maze/tiny.yaml with a short T1 and its scripted demo; source data under ``data_root``."""
    short_t1 = folder / "t1_short.yaml"
    short_t1.write_text(f"extends: {CONFIGS / 'maze/t1.yaml'}\nepisode_steps: {TINY_T1_STEPS}\n")
    path = folder / "exp.yaml"
    path.write_text(
        f"extends: {CONFIGS / 'maze/tiny.yaml'}\n"
        f"source: {CONFIGS / 'maze/source.yaml'}\n"
        f"targets: [{short_t1}]\n"
        f"demos: {{t1: {CONFIGS / 'demos/maze_t1.json'}}}\n"
        f"data: {{root: {data_root}, transitions: {TINY_TRANSITIONS}}}\n"
    )
    return path


@dataclass(frozen=True)
class TrainedRun:
    experiment: Path
    run: Path
    train: CliResult
