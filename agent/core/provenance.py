"""Where a result came from: the `provenance` block every result JSON carries (package version, git commit, the
resolved config, seeds, device, threads, date and the kind of machine), with no path or name of that machine.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from mstt.agent.core.io import portable_path

PACKAGE = "mstt"
PACKAGE_DIR = Path(__file__).resolve().parent
"""Where git is asked for the commit: the package's own folder, so the commit is the code's, not the working
directory's."""
GIT_TIMEOUT_S = 5.0
"""A git call that hangs (a network file system, a lock) gives up after this long; the commit is then null."""
CPUINFO = Path("/proc/cpuinfo")


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None when it is not installed)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def package_version() -> str | None:
    """The installed version of the package (None when it is not installed, e.g. run from a bare source tree)."""
    return installed_version(PACKAGE)


def _git(folder: Path, *args: str) -> str | None:
    """stdout of ``git -C folder ARGS`` or None when git is missing, fails or times out."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_state(folder: Path) -> dict[str, Any] | None:
    """{"commit": HEAD, "dirty": tracked files changed} of the checkout that holds ``folder``; None outside a
    checkout, where git is missing, or where the folder is one git ignores (an installed copy inside a checkout's
    virtual environment is not that checkout's code). Asked once per folder and process."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None or _git(folder, "check-ignore", "-q", ".") is not None:  # check-ignore exits 0 when ignored
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def pin_git_state() -> None:
    """Ask git now for the state of the checkout that holds the package. `git_state` answers once per folder and
    process, so every provenance block this process builds afterwards names this state: the code the process loaded,
    not the checkout as it is when a long run writes its result. The CLI calls it before any command runs."""
    git_state(PACKAGE_DIR)


def _cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what the platform module knows)."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


NUMERIC_LIBRARIES = (
    "vector-quantize-pytorch", "torch-einops-utils", "diffusers", "numpy", "mujoco", "gymnasium-robotics",
)
"""Distributions besides torch whose version can change a run's numbers (vector-quantize-pytorch 1.34.1 trains another
tokenizer than 1.32.0 from the same seed)."""


def library_versions() -> dict[str, str | None]:
    """The installed version of each of ``NUMERIC_LIBRARIES`` (None where one is not installed)."""
    return {name: installed_version(name) for name in NUMERIC_LIBRARIES}


def host_kind() -> dict[str, Any]:
    """What kind of machine ran it, never which one: architecture, CPU model and count, GPU name (no hostname)."""
    return {
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "system": platform.system(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def portable_strings(value: Any) -> Any:
    """``value`` with every string that is an absolute path made portable (io.portable_path: relative to the working
    directory, else the file's name), in nested dicts and lists too, so a result names no folder of the machine."""
    if isinstance(value, Mapping):
        return {key: portable_strings(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable_strings(item) for item in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return portable_path(value)
    return value


def provenance(
    config: Mapping[str, Any], seeds: Mapping[str, int | None], device: str | None = None
) -> dict[str, Any]:
    """The block a result JSON keeps under "provenance".

    Args:
        config: the resolved configuration as plain data (the experiment after `extends:` and overrides, the variant
            configs it names; a command's settings); absolute paths in it are made portable.
        seeds: every seed that shaped the numbers, by name (e.g. {"experiment": 0, "eval": 0}).
        device: the torch device the models ran on (None: none ran).
    """
    return {
        "package": PACKAGE,
        "version": package_version(),
        "git": git_state(PACKAGE_DIR),
        "config": portable_strings(config),
        "seeds": dict(seeds),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_kind(),
        "libraries": library_versions(),
    }
