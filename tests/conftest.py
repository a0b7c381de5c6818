"""Shared test set-up: offscreen MuJoCo, and no maze XML files left in /tmp."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(autouse=True, scope="session")
def _remove_maze_xml() -> Iterator[None]:
    """Every PointMaze creation writes /tmp/ant_maze<time>.xml; remove the ones tests made."""
    pattern = os.path.join(tempfile.gettempdir(), "ant_maze*.xml")
    before = set(glob.glob(pattern))
    yield
    for path in set(glob.glob(pattern)) - before:
        os.remove(path)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tiny nets on a shared 2-core machine run 7-17x faster on one thread: two OpenMP threads
    spin against any other process on the box."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def configs() -> Path:
    return CONFIGS
