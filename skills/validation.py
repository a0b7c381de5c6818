"""Checks shared by the skills' typed configs: an invalid value fails at load time naming the config and the field,
and a config's device ('auto', 'cpu', 'cuda', 'cuda:N') resolves to a torch device in one place."""

from __future__ import annotations

from typing import Any

import torch


def require(condition: bool, field: str, value: Any, requirement: str, *, config: str) -> None:
    """Raise ValueError "CONFIG.FIELD REQUIREMENT, got VALUE" unless ``condition`` holds.

    A config binds its name once: ``_check = functools.partial(require, config="CriticConfig")``.
    """
    if not condition:
        raise ValueError(f"{config}.{field} {requirement}, got {value!r}")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def require_device(config: str, name: str) -> None:
    """Raise ValueError naming ``config``.device unless ``name`` is 'auto' or a torch device."""
    try:
        resolve_device(name)
    except RuntimeError as error:
        raise ValueError(f"{config}.device must name a torch device or 'auto', got {name!r}") from error
