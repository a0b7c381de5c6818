"""Saving and loading of every learned skill component (tokenizer, critic, generator, BC, DDS skills, IQL)
through huggingface_hub's ModelHubMixin: ``save_pretrained``, ``from_pretrained`` (a folder or a Hub repo id),
``push_to_hub``.

A checkpoint is a folder (or a Hub model repo) with model.safetensors (weights and buffers), config.json and the
mixin's model card README.md. config.json layout (format 1; every checkpoint ever written by this code has it)::

    {"format_version": 1, "kind": "<kind>", "config": {<config dataclass fields>}, "extra": {...}}

Saves are atomic: the files go into a temporary sibling folder that is then renamed into place, so a crash mid-save
never leaves a checkpoint whose weights and config disagree. Loads check the kind, the config fields and every
tensor's name and shape, and a mismatch names the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import torch
from huggingface_hub import ModelCard, ModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.hub_mixin import DataclassInstance
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
CONFIG_NAME = constants.CONFIG_NAME
CARD_NAME = constants.REPOCARD_NAME
FORMAT_VERSION = 1
CHECKPOINT_FILES = frozenset({WEIGHTS_NAME, CONFIG_NAME, CARD_NAME})
LIBRARY_NAME = "mstt"

COMPONENT_CARD = """---
{{ card_data }}
---

# mstt {{ kind }}: {{ summary }}

One trained component of an mstt run: `model.safetensors` holds its weights and normalisers, `config.json` its
kind, the config it was built from and the sizes read off the training data (`extra`). Load it alone with

```python
from {{ module }} import {{ class_name }}
model = {{ class_name }}.from_pretrained("FOLDER_OR_REPO_ID")
```

A whole run (every component, the resolved experiment config and its fingerprint) loads with
`mstt eval CONFIG --run USER/NAME`.
"""

ConfigT = TypeVar("ConfigT")
HubT = TypeVar("HubT", bound="HubComponent")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as asked; the message names the file and what differs."""


# ModelHubMixin, not PyTorchModelHubMixin: the latter rebuilds a model from config.json's top-level keys and loads its
# weights non-strictly, while a component here is rebuilt from its config dataclass plus sizes read off the data
# (``extra``), with every tensor checked by name and shape.
class HubComponent(
    nn.Module,
    ModelHubMixin,
    library_name=LIBRARY_NAME,
    license="apache-2.0",
    tags=["mstt", "reinforcement-learning", "offline-reinforcement-learning"],
    model_card_template=COMPONENT_CARD,
):
    """A trained torch module saved and loaded as one checkpoint of ``checkpoint_kind``.

    A subclass keeps its config dataclass in ``self.config``, lists in ``checkpoint_extra`` the JSON facts that
    rebuild it and are not config fields (sizes that come from the data), and rebuilds itself in
    ``from_checkpoint``."""

    checkpoint_kind: ClassVar[str]
    config: Any

    def checkpoint_extra(self) -> dict[str, Any]:
        """JSON-serialisable facts besides the config that rebuild the module (config.json's ``extra``)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, torch.Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> HubComponent:
        """Rebuild the module from config.json's ``values`` (config) and ``extra``, load ``state`` (report
        mismatches against ``folder``'s files) and place it on ``device`` in eval mode."""
        raise NotImplementedError

    # --- saving --------------------------------------------------------------------------------------------

    def _save_pretrained(self, save_directory: Path) -> None:
        """model.safetensors then config.json, in the format above (the mixin then adds the model card)."""
        config = self.config
        if not dataclasses.is_dataclass(config) or isinstance(config, type):
            raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
        payload = {
            "format_version": FORMAT_VERSION,
            "kind": self.checkpoint_kind,
            "config": dataclasses.asdict(config),
            "extra": dict(self.checkpoint_extra()),
        }
        config_text = json.dumps(payload, indent=2, sort_keys=True)  # fail on non-JSON extras before touching disk
        # safetensors wants contiguous CPU tensors that do not share storage.
        tensors = {name: value.detach().to("cpu").contiguous().clone() for name, value in self.state_dict().items()}
        save_file(tensors, str(save_directory / WEIGHTS_NAME), metadata={"kind": self.checkpoint_kind})
        (save_directory / CONFIG_NAME).write_text(config_text + "\n")

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        config: dict[str, Any] | DataclassInstance | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write the checkpoint to ``save_directory`` atomically; an existing checkpoint there is replaced, a folder
        that holds anything else is refused rather than wiped. ``config`` is ignored: config.json is always the
        component's own. With ``push_to_hub`` the checkpoint is also uploaded to ``repo_id`` (default: the folder's
        name).

        Returns:
            The checkpoint folder, or the commit URL when pushing.
        """
        target = Path(save_directory)
        _check_replaceable(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            super().save_pretrained(staging, model_card_kwargs=model_card_kwargs)
            _swap_in(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        if push_to_hub:
            return self.push_to_hub(
                repo_id or target.name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs
            )
        return str(target)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        summary = (type(self).__doc__ or type(self).__name__).strip().splitlines()[0].rstrip(".")
        names = {"kind": self.checkpoint_kind, "summary": summary, "module": type(self).__module__,
                 "class_name": type(self).__name__}  # fmt: skip
        return super().generate_model_card(*args, **{**names, **kwargs})

    # --- loading -------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls: type[HubT],
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> HubT:
        """Load a checkpoint from a folder (a ``Path``, or a string naming an existing folder) or from a Hub model
        repo id (``USER/NAME``, through the Hub cache); refuses a checkpoint of another kind.

        Keyword ``device``: where to put the module (default: each component's own rule, e.g. the saved config's
        device for the critic and the generator)."""
        name = os.fspath(pretrained_model_name_or_path)
        if isinstance(pretrained_model_name_or_path, os.PathLike) or os.path.isdir(name) or not _is_repo_id(name):
            _check_files(Path(name), cls.checkpoint_kind)  # named errors before the mixin reads config.json
        loaded = super().from_pretrained(
            name, force_download=force_download, token=token, cache_dir=cache_dir,
            local_files_only=local_files_only, revision=revision, **model_kwargs,
        )  # fmt: skip
        return cast(HubT, loaded)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        device: str | torch.device | None = None,
        config: Any = None,
        **model_kwargs: Any,
    ) -> HubComponent:
        # ``config`` is what the mixin read of config.json's "config" entry; the whole file is read and checked here.
        if model_kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected arguments {sorted(model_kwargs)}")
        if os.path.isdir(model_id):
            folder = Path(model_id)
        else:
            for name in (CONFIG_NAME, WEIGHTS_NAME):  # both into the same snapshot folder
                path = hf_hub_download(
                    model_id, name, revision=revision, cache_dir=cache_dir, token=token,
                    force_download=force_download, local_files_only=local_files_only,
                )  # fmt: skip
            folder = Path(path).parent
        state, values, extra = load_state(folder, cls.checkpoint_kind)
        return cls.from_checkpoint(state, values, extra, folder, device)


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _check_replaceable(target: Path) -> None:
    """Refuse to save over anything but a checkpoint (or nothing)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"cannot save a checkpoint to {target}: it exists and is not a directory")
    foreign = sorted(p.name for p in target.iterdir() if p.name not in CHECKPOINT_FILES)
    if foreign:
        raise FileExistsError(
            f"refusing to overwrite {target}: it holds files that are not part of a checkpoint ({foreign[:5]}); "
            "save into an empty or new directory"
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Rename the finished ``staging`` folder to ``target``, replacing an existing checkpoint there."""
    if target.exists():
        # POSIX cannot rename a directory over a non-empty one: move the old one aside first.
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, retired / target.name)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


def _check_files(root: Path, kind: str) -> None:
    """A local checkpoint folder has both files and a config.json that parses, else the error names the file."""
    config_path = root / CONFIG_NAME
    for path in (config_path, root / WEIGHTS_NAME):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {root} is not a '{kind}' checkpoint (expected {WEIGHTS_NAME} and {CONFIG_NAME})"
            )
    try:
        json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON: {error}") from error


def load_state(
    directory: str | os.PathLike[str], kind: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read a checkpoint folder and check it is of ``kind``.

    Returns:
        (state_dict on CPU, config dict, extra dict). Rebuild the config with ``config_from_dict`` and load the
        weights with ``load_module_state`` so mismatches are reported against the checkpoint's files.
    """
    root = Path(directory)
    _check_files(root, kind)
    config_path, weights_path = root / CONFIG_NAME, root / WEIGHTS_NAME
    payload = json.loads(config_path.read_text())
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
