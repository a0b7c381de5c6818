"""Shared test set-up: offscreen MuJoCo, no maze XML files left in /tmp, and the layer markers (unit,
integration, e2e) given to every test by the folder it lives in, so `pytest -m unit` runs the fast layer."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from repo_paths import CONFIGS, TESTS  # noqa: E402

# tests/<layer>/... -> marker; a folder below a layer (integration/bad_inputs) takes its layer's marker.
LAYERS = ("unit", "integration", "e2e")
_unlayered: list[str] = []


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            layer = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # a test file outside tests/, named on the command line
            layer = ""
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
        elif item.nodeid.split("::")[0] not in _unlayered:
            _unlayered.append(item.nodeid.split("::")[0])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A test file outside tests/{unit,integration,e2e} has no layer marker, so `-m unit` etc. never run it:
    say so instead of dropping it silently."""
    if _unlayered:
        terminalreporter.write_line(
            f"{len(_unlayered)} test file(s) outside tests/{{{','.join(LAYERS)}}} carry no layer marker; "
            f"move them into their layer: {', '.join(_unlayered)}", yellow=True)


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
