"""Task families behind one interface, found by the config's `task` name.

Adding a family: write agent/tasks/<family>.py with a Task class and a validator, register both here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mstt.agent.tasks.base import Episode, Task


def _families() -> dict[str, tuple[Callable[[Any], Task], Callable[[Any], None]]]:
    # Imported lazily: building a task pulls in MuJoCo, which config loading alone should not.
    from mstt.agent.tasks.fetch import FetchTask, validate_fetch_config
    from mstt.agent.tasks.maze import MazeTask, validate_maze_config

    return {
        "maze": (MazeTask, validate_maze_config),
        "fetch": (FetchTask, validate_fetch_config),
    }


def make_task(config: Any) -> Task:
    """The Task for a loaded config (agent.config.load_config)."""
    families = _families()
    if config.task not in families:
        raise ValueError(f"unknown task {config.task!r}; known: {sorted(families)}")
    return families[config.task][0](config)


def validate_config(config: Any) -> None:
    """Task-specific checks beyond field types (routes exist, cells are free, ...)."""
    _families()[config.task][1](config)


__all__ = ["Episode", "Task", "make_task", "validate_config"]
