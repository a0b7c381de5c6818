"""The one training loop every learned component runs through: accelerate for devices, a progress
bar with the losses, periodic checkpoints of the whole training state, and resumption from them.

A component supplies a `step(step_index) -> dict of floats (or 0-d tensors)` closure and the objects whose state
must survive a restart; the loop owns everything else, written once here.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, SupportsFloat

from accelerate import Accelerator
from tqdm import tqdm

LOOP_STATE_NAME = "loop.json"


class DamagedCheckpointError(ValueError):
    """A resumable training checkpoint cannot be read back (a truncated or half-copied file)."""


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

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError(f"LoopSettings.checkpoint_every must be >= 1, got {self.checkpoint_every}")


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

    Returns the logged losses (one dict every `log_every` steps of this run).
    """
    counter = StepCounter()
    objects = dict(stateful) | {"__counter": counter}
    if settings.directory is not None and (settings.directory / LOOP_STATE_NAME).exists():
        _load(settings.directory, accelerator, objects)
    history: list[dict[str, float]] = []
    bar = tqdm(
        total=steps, initial=counter.step, desc=name, disable=not settings.progress, leave=False
    )
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
            if settings.directory is not None and (
                counter.step % settings.checkpoint_every == 0 or counter.step == steps
            ):
                _save(settings.directory, accelerator, objects)
    finally:
        bar.close()
    return history


def _save(directory: Path, accelerator: Accelerator, objects: Mapping[str, Stateful]) -> None:
    """Write the whole training state to a sibling temp folder, then swap it in atomically."""
    import torch

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
    import torch

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
