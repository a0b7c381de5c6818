"""The one training loop every learned component runs through: accelerate for devices, a progress
bar with the losses, periodic checkpoints of the whole training state, and resumption from them.

A component supplies a `step(step_index) -> dict of floats (or 0-d tensors)` closure and the objects whose state
must survive a restart; the loop owns everything else, written once here: its scalars (the step's own, the learning
rate, steps/s) go every `log_every` steps to a CSV and to an accelerate tracker (TensorBoard or W&B).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, SupportsFloat

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker, TensorBoardTracker, WandBTracker
from accelerate.utils import is_tensorboard_available, is_wandb_available
from tqdm import tqdm

LOOP_STATE_NAME = "loop.json"
TRACKERS = ("tensorboard", "wandb", "none")
"""Where a loop's scalars go besides its CSV (always written); by default TensorBoard where it is installed."""
TRACKER_EXTRAS = {"tensorboard": "track", "wandb": "wandb"}
"""The mstt extra that installs each tracker."""
TENSORBOARD_DIR = "tensorboard"
"""Beside a loop's CSV: its TensorBoard event files, in TENSORBOARD_DIR/<CSV name without .csv>/."""
WANDB_DIR = "wandb"
WANDB_PROJECT = "mstt"
STEP_COLUMN = "step"
LR_COLUMN = "lr"
RATE_COLUMN = "steps_per_s"


class DamagedCheckpointError(ValueError):
    """A resumable training checkpoint cannot be read back (a truncated or half-copied file)."""


class TrackerUnavailableError(ValueError):
    """The tracker asked for is not installed."""


def resolve_tracker(track: str | None) -> str:
    """``track`` checked against TRACKERS and against what is installed; None: 'tensorboard' where it is installed,
    else 'none'."""
    if track is None:
        return "tensorboard" if is_tensorboard_available() else "none"
    if track not in TRACKERS:
        raise ValueError(f"unknown training tracker {track!r}: choose one of {', '.join(TRACKERS)}")
    installed = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    if track in installed and not installed[track]():
        raise TrackerUnavailableError(
            f"tracking with {track} needs the {track} package, which is not installed: "
            f"pip install 'mstt[{TRACKER_EXTRAS[track]}]'"
        )
    return track


_TRACK: ContextVar[str | None] = ContextVar("mstt_track", default=None)
"""The tracker of loops whose LoopSettings name none (set by ``tracking``)."""


@contextlib.contextmanager
def tracking(track: str | None) -> Iterator[str]:
    """Loops run inside log to ``track`` (resolved and checked first, see resolve_tracker) unless their
    LoopSettings name a tracker: how a command line's choice reaches every stage without each layer passing it on."""
    resolved = resolve_tracker(track)
    token = _TRACK.set(resolved)
    try:
        yield resolved
    finally:
        _TRACK.reset(token)


class Stateful(Protocol):
    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class LoopSettings:
    """Where and how often a loop checkpoints; shared by every component's training."""

    directory: Path | None = None
    """Folder for the resumable training state (None: no checkpoints, no resumption)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints of the full training state."""
    progress: bool = True
    """Show a tqdm bar with the latest losses."""
    log_csv: Path | None = None
    """CSV of the logged scalars, one row per logged step (None: none, and no tracker). A resumed loop continues it
    from its checkpointed step. The tracker writes beside it (TENSORBOARD_DIR/<its stem>/)."""
    track: str | None = None
    """One of TRACKERS; None: the one ``tracking`` set, else the default of resolve_tracker."""

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError(f"LoopSettings.checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.track is not None and self.track not in TRACKERS:
            raise ValueError(f"LoopSettings.track must be one of {TRACKERS} or None, got {self.track!r}")


class StepCounter:
    """The loop's position, checkpointed with everything else."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])


def run_loop(
    name: str,
    accelerator: Accelerator,
    steps: int,
    step_fn: Callable[[int], Mapping[str, SupportsFloat]],
    stateful: Mapping[str, Stateful],
    settings: LoopSettings,
    log_every: int = 50,
) -> list[dict[str, float]]:
    """Run `step_fn` for steps [start, steps), resuming from `settings.directory` if it holds a
    checkpoint. Models and optimisers must already be `accelerator.prepare`d; `stateful` lists
    every other object whose state matters (target networks, EMA, RNGs, counters).

    Returns the logged losses (one dict every `log_every` steps of this run). The scalars logged (the step's, the
    learning rate, steps/s) also go to ``settings.log_csv`` and its tracker; logging reads only values the step
    returned and host-side state, so it neither draws random numbers nor changes what the step computes.
    """
    counter = StepCounter()
    objects = dict(stateful) | {"__counter": counter}
    if settings.directory is not None and (settings.directory / LOOP_STATE_NAME).exists():
        _load(settings.directory, accelerator, objects)
    history: list[dict[str, float]] = []
    log = None
    if settings.log_csv is not None and accelerator.is_main_process:
        track = resolve_tracker(settings.track) if settings.track else _TRACK.get() or resolve_tracker(None)
        log = ScalarLog(settings.log_csv, track, counter.step)
    bar = tqdm(
        total=steps, initial=counter.step, desc=name, disable=not settings.progress, leave=False
    )
    first_step, started = counter.step, time.perf_counter()
    last_step, last_time = first_step, started
    try:
        while counter.step < steps:
            logs = step_fn(counter.step)
            counter.step += 1
            bar.update(1)
            if counter.step % log_every == 0 or counter.step == steps:
                values = {k: float(v) for k, v in logs.items()}
                for key, value in values.items():
                    if not math.isfinite(value):
                        raise FloatingPointError(f"{name}: {key} became {value} at step {counter.step}")
                history.append({"step": float(counter.step), **values})
                bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()})
                if log is not None:
                    now = time.perf_counter()
                    rate = (counter.step - last_step) / max(now - last_time, 1e-9)
                    log.write(counter.step, values | learning_rates(accelerator) | {RATE_COLUMN: rate})
                    last_step, last_time = counter.step, now
            if settings.directory is not None and (
                counter.step % settings.checkpoint_every == 0 or counter.step == steps
            ):
                _save(settings.directory, accelerator, objects)
    finally:
        bar.close()
        if log is not None:
            log.close()
    if log is not None and settings.progress and counter.step > first_step:
        rate = (counter.step - first_step) / max(time.perf_counter() - started, 1e-9)
        tqdm.write(f"{name}: steps {first_step}-{counter.step} at {rate:.0f} steps/s; scalars in {log.where}")
    return history


def learning_rates(accelerator: Accelerator) -> dict[str, float]:
    """The current learning rate of every optimiser the accelerator prepared (LR_COLUMN, then lr_1, ... for further
    optimisers or parameter groups)."""
    # accelerate keeps its prepared optimisers in _optimizers (save_state reads them there); it has no public list
    rates = [float(group["lr"]) for opt in accelerator._optimizers for group in opt.param_groups]
    return {LR_COLUMN if i == 0 else f"{LR_COLUMN}_{i}": rate for i, rate in enumerate(rates)}


class ScalarLog:
    """A loop's logged scalars: a CSV (header: step, then the scalar names; one row per logged step) and a tracker.

    Opened at the loop's start step: rows of later steps (written by a run killed before its next checkpoint) are
    dropped, so a resumed loop continues the CSV without duplicates, and TensorBoard purges its later events."""

    def __init__(self, path: Path, track: str, start_step: int) -> None:
        self.path = path
        self.header, kept = _read_rows(path, start_step)
        if kept:
            _write_rows(path, self.header, kept)
        else:
            self.header = []
            path.unlink(missing_ok=True)
        self.tracker = _make_tracker(track, path, start_step)
        self._handle: Any = None
        also = {"tensorboard": f" and {path.parent / TENSORBOARD_DIR / path.stem}", "wandb": " and W&B"}
        self.where = f"{path}{also.get(track, '')}"
        """Where the scalars go, for the terminal."""

    def write(self, step: int, values: Mapping[str, float]) -> None:
        row = {STEP_COLUMN: step, **values}
        if self._handle is None:
            header = [*self.header, *(key for key in row if key not in self.header)]
            if header != self.header:
                _write_rows(self.path, header, _read_rows(self.path, step)[1])
                self.header = header
            self._handle = self.path.open("a", newline="")
        csv.DictWriter(self._handle, self.header).writerow(row)
        self._handle.flush()
        if self.tracker is not None:
            self.tracker.log(dict(values), step=step)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.tracker is not None:
            self.tracker.finish()
            self.tracker = None


def _read_rows(path: Path, up_to: int) -> tuple[list[str], list[dict[str, str]]]:
    """The header of a scalar CSV and its rows of steps <= ``up_to`` (none when it does not exist)."""
    if not path.exists():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get(STEP_COLUMN) and float(row[STEP_COLUMN]) <= up_to]
        return list(reader.fieldnames or []), rows


def _write_rows(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` with these rows, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, header, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _make_tracker(track: str, csv_path: Path, start_step: int) -> GeneralTracker | None:
    """The accelerate tracker ``track`` (the classes Accelerator(log_with=...) builds), started; named after the CSV."""
    tracker: GeneralTracker
    if track == "tensorboard":
        # purge_step: events a killed run wrote after the checkpoint the loop resumes from are dropped
        purge = {"purge_step": start_step + 1} if start_step > 0 else {}
        tracker = TensorBoardTracker(csv_path.stem, csv_path.parent / TENSORBOARD_DIR, **purge)
    elif track == "wandb":
        run_name = f"{csv_path.parent.parent.name}/{csv_path.stem}"
        tracker = WandBTracker(WANDB_PROJECT, name=run_name, dir=str(csv_path.parent / WANDB_DIR))
    else:
        return None
    tracker.start()
    return tracker


def _save(directory: Path, accelerator: Accelerator, objects: Mapping[str, Stateful]) -> None:
    """Write the whole training state to a sibling temp folder, then swap it in atomically."""

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        # Pickle, not safetensors: the latter drops zero-size buffers (e.g. an unused goal norm).
        accelerator.save_state(str(staging / "accelerate"), safe_serialization=False)
        torch.save({k: v.state_dict() for k, v in objects.items()}, staging / "objects.pt")
        (staging / LOOP_STATE_NAME).write_text(json.dumps(objects["__counter"].state_dict()))
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            os.replace(directory, old)
        os.replace(staging, directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError)
"""What torch and accelerate raise on a file they cannot read back."""
REASON_CHARS = 200
"""A damaged checkpoint's message quotes at most this much of the loader's own error."""


def _read_checkpoint(directory: Path, part: str, read: Callable[[], Any]) -> Any:
    """``read()`` the ``part`` of a checkpoint. A checkpoint is swapped in whole (see _save), so one that cannot be
    read was damaged afterwards (a truncated copy, a full disk): say which, and how to start the stage again."""
    try:
        return read()
    except _UNREADABLE as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DamagedCheckpointError(
            f"{directory / part}: damaged training checkpoint ({reason[:REASON_CHARS]}); delete {directory} to "
            "restart this stage from its first step"
        ) from None


def _load(directory: Path, accelerator: Accelerator, objects: Mapping[str, Stateful]) -> None:

    _read_checkpoint(directory, "accelerate", lambda: accelerator.load_state(str(directory / "accelerate")))
    saved = _read_checkpoint(directory, "objects.pt", lambda: torch.load(directory / "objects.pt", weights_only=False))
    missing = set(objects) - set(saved)
    if missing:
        raise ValueError(f"{directory}: checkpoint lacks training state {sorted(missing)}")
    for key, obj in objects.items():
        obj.load_state_dict(saved[key])


class GeneratorState:
    """Adapts a torch.Generator (get_state/set_state) to the state_dict protocol."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["state"])


def make_accelerator(device: str) -> Accelerator:
    """An Accelerator on `device` ('auto': whatever accelerate finds; 'cpu' forces the CPU)."""
    return Accelerator(cpu=device == "cpu")
