"""Training curves of a run: one PNG per stage drawn from the scalar CSVs its loops logged (run/logs/STAGE.csv, see
skills/training.py), one panel per scalar against the step; `mstt plot`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.figure import Figure

# the one atomic figure writer (temp file, then rename), shared with the transfer figure
from mstt.agent.experiments.figures import _save_atomic
from mstt.agent.experiments.stages import LOGS_DIR
from mstt.skills.training import STEP_COLUMN

PANEL_COLUMNS = 3
PANEL_SIZE = (4.0, 2.8)
"""Inches per panel (width, height)."""
LOG_SCALE_SPAN = 10.0
"""A scalar whose values are all positive and span at least this factor (a falling loss) is drawn on a log axis."""
DPI = 100


class NoTrainingLogsError(FileNotFoundError):
    """The run folder holds no scalar logs to plot."""


def read_scalars(path: Path) -> dict[str, list[float]]:
    """A scalar CSV as columns: ``step`` and every logged scalar (empty cells, from a column added midway, as nan)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = list(rows[0]) if rows else []
    return {name: [float(row[name]) if row.get(name) else math.nan for row in rows] for name in names}


def plot_run(run: Path, out: Path | None = None) -> list[Path]:
    """Draw every stage's curves of ``run`` into ``out`` (default run/logs) as STAGE.png; returns the PNGs written."""
    logs = run / LOGS_DIR
    tables = sorted(logs.glob("*.csv")) if logs.is_dir() else []
    if not tables:
        raise NoTrainingLogsError(
            f"{run}: no training logs to plot ({logs}/*.csv missing): train the run with `mstt train` first"
        )
    target = out if out is not None else logs
    written = []
    for table in tables:
        scalars = read_scalars(table)
        if not scalars.get(STEP_COLUMN):
            continue
        written.append(_save_atomic(stage_figure(table.stem, scalars), target / f"{table.stem}.png"))
    if not written:
        raise NoTrainingLogsError(f"{run}: the training logs in {logs} hold no logged step yet")
    return written


def stage_figure(stage: str, scalars: dict[str, list[float]]) -> Figure:
    """One panel per scalar against the step; losses (all positive, spanning LOG_SCALE_SPAN or more) on a log axis."""
    steps = scalars[STEP_COLUMN]
    names = [name for name in scalars if name != STEP_COLUMN]
    rows = max(1, math.ceil(len(names) / PANEL_COLUMNS))
    cols = min(PANEL_COLUMNS, max(1, len(names)))
    figure = Figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), dpi=DPI, layout="constrained")
    figure.suptitle(stage)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, cols, index + 1)
        values = scalars[name]
        axes.plot(steps, values, marker="." if len(steps) < 2 else None)
        axes.set_title(name, fontsize="medium")
        axes.set_xlabel("step")
        finite = [v for v in values if math.isfinite(v)]
        if finite and min(finite) > 0 and max(finite) / min(finite) >= LOG_SCALE_SPAN:
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
    return figure
