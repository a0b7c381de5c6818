"""Generic checkpoint helpers shared by every learned skill component (tokenizer, critic, generator).
A checkpoint is a directory with model.safetensors (weights and buffers) and config.json (kind, config, extra).

config.json layout::

    {"format_version": 1, "kind": "<kind>", "config": {<config dataclass fields>}, "extra": {...}}

Writes are atomic: both files go into a temporary sibling directory that is then renamed into place, so a
crash mid-save never leaves a checkpoint whose weights and config disagree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
CHECKPOINT_FILES = frozenset({WEIGHTS_NAME, CONFIG_NAME})

ConfigT = TypeVar("ConfigT")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as asked; the message names the file and what differs."""


def save_module(
    module: nn.Module,
    config: Any,
    directory: str | os.PathLike[str],
    kind: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``module``'s state dict and ``config`` (a dataclass instance) as a checkpoint of ``kind``.

    ``extra`` holds JSON-serialisable facts needed to rebuild the module that are not config fields
    (e.g. ``pos_dim``, which comes from the data). An existing checkpoint at ``directory`` is replaced; a
    directory that holds anything else is refused rather than wiped.

    Returns:
        The checkpoint directory.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    target = Path(directory)
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"cannot save a checkpoint to {target}: it exists and is not a directory")
        foreign = sorted(p.name for p in target.iterdir() if p.name not in CHECKPOINT_FILES)
        if foreign:
            raise FileExistsError(
                f"refusing to overwrite {target}: it holds files that are not part of a checkpoint ({foreign[:5]}); "
                "save into an empty or new directory"
            )
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": dataclasses.asdict(config),
        "extra": dict(extra or {}),
    }
    config_text = json.dumps(payload, indent=2, sort_keys=True)  # fail on non-JSON extras before touching disk
    # safetensors wants contiguous CPU tensors that do not share storage.
    tensors = {name: value.detach().to("cpu").contiguous().clone() for name, value in module.state_dict().items()}

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"kind": kind})
        (staging / CONFIG_NAME).write_text(config_text + "\n")
        if target.exists():
            # POSIX cannot rename a directory over a non-empty one: move the old one aside first.
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def load_state(
    directory: str | os.PathLike[str], kind: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read a checkpoint written by ``save_module`` and check it is of ``kind``.

    Returns:
        (state_dict on CPU, config dict, extra dict). Rebuild the config with ``config_from_dict`` and load the
        weights with ``load_module_state`` so mismatches are reported against the checkpoint's files.
    """
    root = Path(directory)
    config_path, weights_path = root / CONFIG_NAME, root / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {root} is not a '{kind}' checkpoint (expected {WEIGHTS_NAME} and {CONFIG_NAME})"
            )
    try:
        payload = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict) or not {"kind", "config"} <= payload.keys():
        raise CheckpointError(f"{config_path} lacks the 'kind' and 'config' entries of a checkpoint config")
    if payload["kind"] != kind:
        raise CheckpointError(
            f"{config_path} holds a checkpoint of kind '{payload['kind']}', expected '{kind}'; "
            "point to the right checkpoint directory"
        )
    version = payload.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{config_path} has format_version {version}; this code reads version {FORMAT_VERSION}")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights_path} cannot be read as safetensors: {error}") from error
    return state, dict(payload["config"]), dict(payload.get("extra", {}))


def config_from_dict(config_cls: type[ConfigT], values: Mapping[str, Any], source: str | os.PathLike[str]) -> ConfigT:
    """Rebuild a config dataclass from its JSON dict, naming ``source`` when fields are unknown, missing or invalid.

    JSON has no tuples, so list values of tuple-typed fields are turned back into tuples.
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config_cls must be a dataclass type, got {config_cls!r}")
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{source}: config fields {unknown} are not fields of {config_cls.__name__}; "
            "the checkpoint was written by a different version of this code"
        )
    kwargs = {}
    for name, value in values.items():
        if isinstance(value, list) and str(fields[name].type).lower().startswith("tuple"):
            value = tuple(value)
        kwargs[name] = value
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: invalid {config_cls.__name__}: {error}") from error


def load_module_state(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """Copy ``state`` into ``module`` after checking names and shapes, naming ``source`` on any mismatch."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{name}: file {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in expected
        if name in state and tuple(state[name].shape) != tuple(expected[name].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:8]}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:8]}")
    if mismatched:
        problems.append(f"shape mismatches {mismatched[:8]}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(module).__name__} built from its config: " + "; ".join(problems)
        )
    module.load_state_dict(dict(state), strict=True)
