"""Small file helpers: every result file is written whole or not at all, and every output location is
checked before the work that fills it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

RESULT_FILE_MODE = 0o644


def portable_path(path: str | Path) -> str:
    """How a result file names an input: relative to the working directory when it lies under it, else its name
    alone, so that no result records the layout of the machine that made it."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


class UnwritablePathError(OSError):
    """An output location cannot be written; the message names the option, the path and the reason."""


def check_writable(path: str | Path, option: str, kind: Literal["file", "folder"]) -> Path:
    """Refuse an output ``path`` (a file to write, or a folder to write into) that cannot be written, before any
    work starts; ``option`` names where the path came from (``--out``, ``data.root``). Nothing is created.

    The nearest existing folder on the way to the path is probed with a temporary file, so the check is what a
    write would meet: permissions, a read-only file system, a regular file where a folder must be (it also holds
    where file modes do not, e.g. for root)."""
    path = Path(path).absolute()
    if kind == "file" and path.is_dir():
        raise UnwritablePathError(f"{option} {path}: is a folder, expected a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UnwritablePathError(f"{option} {path}: is a file, expected a folder")
    existing = path if kind == "folder" else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UnwritablePathError(f"{option} {path}: {existing} is a file, so nothing can be created under it")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UnwritablePathError(
            f"{option} {path}: cannot write in {existing} ({err.strerror or err}); choose a writable location"
        ) from None
    return path


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: dataclasses (nested ones too) and the dicts around them become dicts."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write JSON through a temp file and a rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.chmod(tmp, RESULT_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt as SIGINT does, so `finally` clean-ups run on a kill
    too (Python's default for SIGTERM ends the process without them). Only the main thread can own a handler;
    elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
