"""World families behind one Task interface, found by the config's `task` name: load a variant config, build its Task.

Adding a family: write agent/worlds/<family>.py with a Task class and a config validator, and add both to FAMILIES.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mstt.agent.core.config import ConfigError, TaskConfig, read_task_config
from mstt.agent.worlds.base import Task
from mstt.agent.worlds.fetch import FetchTask, validate_fetch_config
from mstt.agent.worlds.house import HouseTask, validate_house_config
from mstt.agent.worlds.maze import MazeTask, validate_maze_config

FAMILIES: dict[str, tuple[type[Task], Callable[[Any], None]]] = {
    "maze": (MazeTask, validate_maze_config),
    "fetch": (FetchTask, validate_fetch_config),
    "house": (HouseTask, validate_house_config),
}
"""task name -> (the Task class, the checks that need the family's own knowledge)."""


def make_task(config: Any) -> Task:
    """The Task for a loaded config (load_config)."""
    if config.task not in FAMILIES:
        raise ValueError(f"unknown task {config.task!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[config.task][0](config)


def validate_config(config: Any) -> None:
    """Task-specific checks beyond field types (routes exist, cells are free, ...)."""
    FAMILIES[config.task][1](config)


def load_config(path: str | Path) -> TaskConfig:
    """Load and validate one variant config; raise ConfigError naming file, field and value."""
    config = read_task_config(path)
    try:
        validate_config(config)
    except ValueError as err:
        raise ConfigError(f"{config._file}: {err}") from None
    return config
