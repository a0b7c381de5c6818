"""Builds a DemoPerceiver by its registered name from a config mapping (e.g. a YAML section).

A new backend is one new file with a config dataclass and a perceiver class, plus one line here.
Backends are imported only when built, so choosing 'geometric' never imports transformers or openai.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from mstt.perception.base import DemoPerceiver

# name -> (module, perceiver class, config class)
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "geometric": ("mstt.perception.geometric", "GeometricPerceiver", "GeometricConfig"),
    "hf": ("mstt.perception.hf_vlm", "HFPerceiver", "HFConfig"),
    "openai": ("mstt.perception.openai_vlm", "OpenAIPerceiver", "OpenAIConfig"),
}


def available_perceivers() -> list[str]:
    return sorted(_BACKENDS)


def _classes(name: str) -> tuple[type, type]:
    if name not in _BACKENDS:
        raise ValueError(f"unknown perception backend {name!r}; known: {available_perceivers()}")
    module_name, perceiver, config = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"perception backend {name!r} needs the package {err.name!r}, which is not installed: "
            "pip install 'mstt[vlm]'"
        ) from None
    return getattr(module, perceiver), getattr(module, config)


def perceiver_config(name: str, config: Mapping[str, Any] | Any | None = None) -> Any:
    """The backend's config dataclass from a mapping (unknown or missing fields are named), an instance,
    or None (defaults)."""
    _, config_cls = _classes(name)
    if isinstance(config, config_cls):
        return config
    values = dict(config or {})
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"{config_cls.__name__}: unknown field(s) {unknown} for backend {name!r}; known: {sorted(fields)}"
        )
    missing = sorted(
        f.name
        for f in dataclasses.fields(config_cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
    )
    if missing:
        raise ValueError(f"{config_cls.__name__}: backend {name!r} needs field(s) {missing}")
    return config_cls(**values)


def make_perceiver(
    name: str, config: Mapping[str, Any] | Any | None = None, **backend_kwargs: Any
) -> DemoPerceiver:
    """The perceiver registered as `name` ('geometric', 'hf', 'openai') with this config.

    backend_kwargs go to the perceiver's constructor (e.g. http_client for 'openai').
    """
    perceiver_cls, _ = _classes(name)
    return perceiver_cls(perceiver_config(name, config), **backend_kwargs)
