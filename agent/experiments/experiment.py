"""An experiment config: the source world to train in, the target worlds to transfer to, their
demos, and every hyper-parameter of every component (typed, validated when the YAML is loaded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from mstt.agent.core.config import (
    DEMO_FIELDS,
    ConfigError,
    Override,
    Settings,
    TaskConfig,
    _format_validation_error,
    _read_yaml,
    apply_overrides,
    check_device,
    describe_overrides,
    referenced_file,
)  # fmt: skip
from mstt.agent.core.io import plain
from mstt.agent.experiments.methods import DEFAULT_METHODS, METHODS, check_methods
from mstt.agent.experiments.pixels import egocentric_families
from mstt.agent.worlds import load_config
from mstt.agent.worlds.data import DataSettings
from mstt.agent.worlds.house_frames import FrameSettings
from mstt.skills.bc import BCConfig
from mstt.skills.critic import CriticConfig
from mstt.skills.dara import DARAConfig
from mstt.skills.dds import DDSConfig
from mstt.skills.diffuser import DiffuserConfig
from mstt.skills.generator import GeneratorConfig
from mstt.skills.iql import IQLConfig
from mstt.skills.localizer import LocalizerConfig, PoseFilter
from mstt.skills.masks import MaskInferenceConfig
from mstt.skills.planner import PlannerConfig
from mstt.skills.tokenizer import TokenizerConfig

ALL_METHODS: tuple[str, ...] = tuple(METHODS)
"""Every eval method (agent/methods.py); mstt_dds, diffuser and dara_* need their optional stage's section (see
ExperimentConfig)."""
BASELINE_SECTIONS = ("diffuser", "dara", "localizer")
"""Optional sections a run folder can gain after the fact (the paper's baselines, the house's localizer), so the run's
fingerprint leaves them out and each of their stages is checked against its own section instead
(train.check_baseline_stages)."""


class TrainSettings(Settings):
    device: str = "auto"
    """Device for every component ('auto': accelerate's choice, 'cpu', 'cuda', ...)."""

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return check_device(value)

    checkpoint_every: int = Field(default=1000, gt=0)
    """Steps between resumable checkpoints inside each component's training."""
    windows_stride: int = Field(default=1, gt=0)
    """Stride of the H-step data windows every component trains on."""


class EvalSettings(Settings):
    episodes: int = Field(default=100, gt=0)
    """Episodes per variant and method."""
    n_envs: int = Field(default=20, gt=0)
    """Environments stepped together (one batched planning call per decision)."""
    replan_every: int | None = Field(default=None, gt=0)
    """Steps between decisions; None decides every H steps."""
    replan_after_fallback: int | None = Field(default=None, gt=0)
    """Steps an env executes a fallback choice before it decides again; None: ``replan_every``. A fallback candidate
    is the best of a bad lot (nothing permitted was proposed), so committing to it for H steps can carry the agent
    where the demo never went (Fetch: into the zone)."""
    methods: list[str] = list(DEFAULT_METHODS)
    """Methods of agent/methods.py's table, run side by side on the same episodes."""
    observation: Literal["state", "pixels"] = "state"
    """What the agent sees: "state", the simulator's own observation (in the house: GPS + compass, its exact pose), or
    "pixels", rendered frames only (agent/experiments/pixels.py: the maze's top-down frame read by perception, the
    house's egocentric frame read by the trained localizer stage)."""
    diffuser_replan_every: int | None = Field(default=50, gt=0)
    """Steps between the Diffuser baseline's plans (each from the current state to the goal); None plans once per
    horizon."""
    oracle_tolerance: float = Field(default=0.02, ge=0, lt=1)
    """oracle_mask drops a token when more than this share of its data windows violate the target."""
    seed: int = 0

    @model_validator(mode="after")
    def _known_methods(self) -> EvalSettings:
        check_methods(self.methods, "field 'eval.methods'")
        return self


class DARASettings(Settings):
    """DARA (Liu et al. 2022): per target variant, a small action-labelled target dataset collected by the source
    expert in the target world, two domain classifiers whose log-ratio estimates the dynamics gap, source rewards
    augmented by eta times it, then IQL on source + target transitions."""

    shares: list[float] = [0.05, 0.10]
    """Target dataset sizes to train, as shares of the source dataset (one DARA policy per variant and share; the
    eval methods dara_5pct and dara_10pct read 0.05 and 0.10)."""
    seed: int = 1
    """Seed of the target datasets' expert (the source data used the dataset section's seed)."""
    classifiers: DARAConfig = DARAConfig()
    iql: IQLConfig = IQLConfig()

    @field_validator("shares")
    @classmethod
    def _check_shares(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < share <= 1 for share in value):
            raise ValueError(f"shares must be a non-empty list of numbers in (0, 1], got {value}")
        return value


class LocalizerSettings(Settings):
    """The house's learned localizer (skills/localizer.py): one egocentric frame -> the agent's pose, trained on
    frames of the source house only; the pose `mstt eval --observation pixels` gives the agent there."""

    frames: FrameSettings = FrameSettings()
    """The egocentric frames it trains on and is tested on (agent/worlds/house_frames.py)."""
    model: LocalizerConfig = LocalizerConfig()
    filter: PoseFilter = PoseFilter()
    """How pixel observations fuse each frame's reading with the last estimate moved by the action (eval only)."""


class ExperimentConfig(Settings):
    experiment: Literal["mstt"]
    source: str
    """Source variant config (relative to this file)."""
    targets: list[str]
    """Target variant configs (relative to this file)."""
    demos: dict[str, str] = {}
    """variant -> demo JSON (relative to this file); default: the variant's scripted demo."""
    seed: int = 0
    data: DataSettings = DataSettings()
    train: TrainSettings = TrainSettings()
    tokenizer: TokenizerConfig = TokenizerConfig()
    mask: MaskInferenceConfig = MaskInferenceConfig()
    critic: CriticConfig = CriticConfig()
    generator: GeneratorConfig = GeneratorConfig()
    planner: PlannerConfig = PlannerConfig()
    bc: BCConfig = BCConfig()
    executor_dds: DDSConfig | None = None
    """Optional DDS skills (encoder + diffusion action decoder, no high level) trained on the source data as
    MSTT's closed-loop low-level executor (eval method mstt_dds); None trains no such stage."""
    diffuser: DiffuserConfig | None = None
    """Optional Diffuser baseline (eval method diffuser), trained on the source data."""
    dara: DARASettings | None = None
    """Optional DARA baseline (eval methods dara_5pct, dara_10pct); it alone sees target-world actions."""
    localizer: LocalizerSettings | None = None
    """Optional frame -> pose localizer of a world with egocentric frames (the house), needed by pixel observations
    there (eval.observation); None trains no such stage."""
    eval: EvalSettings = EvalSettings()

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if self.generator.horizon != self.tokenizer.horizon:
            raise ValueError(
                f"generator.horizon={self.generator.horizon} must equal tokenizer.horizon="
                f"{self.tokenizer.horizon}: candidates are encoded into skill tokens"
            )
        if self.executor_dds is not None and self.executor_dds.horizon > self.generator.horizon:
            raise ValueError(
                f"executor_dds.encoder.horizon={self.executor_dds.horizon} must not exceed generator.horizon="
                f"{self.generator.horizon}: the executor encodes the first steps of each planned candidate"
            )
        for method in self.eval.methods:
            stage = METHODS[method].needs_stage
            if stage is not None and getattr(self, stage) is None:
                raise ValueError(f"eval.methods lists {method}: give a {stage} section to train what it needs")
        share = [METHODS[m].target_share for m in self.eval.methods if METHODS[m].target_share is not None]
        if self.dara is not None and any(s not in self.dara.shares for s in share):
            raise ValueError(f"eval.methods needs DARA target shares {share}; dara.shares trains {self.dara.shares}")
        if not self.targets:
            raise ValueError("targets: give at least one target variant config")
        return self


@dataclass(frozen=True)
class Experiment:
    """A loaded experiment: its config, file, and the resolved variant configs."""

    config: ExperimentConfig
    path: Path
    source: TaskConfig
    targets: dict[str, TaskConfig]
    demo_files: dict[str, Path]
    overrides: tuple[str, ...] = ()
    """The command-line overrides applied to the file ('--seed 1', '--ablation planner_token'), as result files record
    them."""

    @property
    def label(self) -> str:
        """The config as the command line named it: the file, then its overrides."""
        return " ".join((str(self.path), *self.overrides))

    def with_device(self, device: str) -> Experiment:
        """The same experiment trained on ``device`` ('auto', 'cpu', 'cuda', 'cuda:N'); the fingerprint is
        unchanged, so a run folder can be resumed on another device."""
        train = self.config.train.model_copy(update={"device": device})
        return replace(self, config=self.config.model_copy(update={"train": train}))

    def fingerprint(self) -> str:
        """Hash of everything that shapes training; a run folder refuses a different one."""
        target_only = getattr(self.source, "target_fields", frozenset())  # Fetch's starts
        relevant = {
            "source": self.source.model_dump(exclude=set(DEMO_FIELDS | target_only)),
            "data": self.config.data.model_dump(),
            "seed": self.config.seed,
            **{k: plain(getattr(self.config, k)) for k in ("tokenizer", "critic", "generator", "bc")},
        }
        if self.config.executor_dds is not None:  # absent: run folders trained without it keep their fingerprint
            relevant["executor_dds"] = plain(self.config.executor_dds)
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_experiment_file(
    path: str | Path, kind: str, model: type[ModelT], hint: str, overrides: Sequence[Override] = ()
) -> tuple[Path, ModelT, TaskConfig]:
    """Read an experiment YAML of ``experiment: kind``, apply ``overrides`` (agent/config.py), validate it as
    ``model`` and load its source world.

    Returns (resolved path, validated config, source variant config); every error names the file and field, and the
    override that set it (``hint`` says what to pass instead when the file is of another kind)."""
    path = Path(path).resolve()
    data = apply_overrides(_read_yaml(path), overrides)
    if data.get("experiment") != kind:
        raise ConfigError(
            f"{path}: field 'experiment' = {data.get('experiment')!r}: not an experiment config of kind "
            f"{kind!r} (expected 'experiment: {kind}'; {hint})"
        )
    try:
        config = model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err, overrides)) from None
    source_file = config.source
    source = load_config(referenced_file(path, "source", source_file))
    if source.role != "source":
        raise ConfigError(f"{path}: field 'source' = {source_file!r} is a {source.role} variant")
    return path, config, source


def load_experiment(path: str | Path, overrides: Sequence[Override] = ()) -> Experiment:
    """Load and validate an experiment YAML, changed by ``overrides`` (``--seed``, ``--set``, ``--ablation``; see
    agent/config.py command_line_overrides), and every variant config it names."""
    path, config, source = load_experiment_file(
        path, "mstt", ExperimentConfig, "variant configs go to collect/demo-make/render", overrides
    )
    if config.localizer is not None and source.task not in egocentric_families():
        raise ConfigError(
            f"{path}: field 'localizer': a {source.task} world has no egocentric frames to localize from (only "
            f"{egocentric_families()} do); remove the section"
        )
    targets: dict[str, TaskConfig] = {}
    for i, name in enumerate(config.targets):
        target = load_config(referenced_file(path, f"targets[{i}]", name))
        if target.task != source.task:
            raise ConfigError(f"{path}: target {name!r} is a {target.task} task, source is {source.task}")
        targets[target.variant] = target
    unknown = set(config.demos) - set(targets)
    if unknown:
        raise ConfigError(f"{path}: field 'demos' names variants {sorted(unknown)} not in targets")
    demo_files = {variant: referenced_file(path, f"demos.{variant}", file) for variant, file in config.demos.items()}
    return Experiment(config, path, source, targets, demo_files, describe_overrides(overrides))


C = TypeVar("C")


def component_config(component: C, device: str, seed: int) -> C:
    """A component's config as an experiment trains it: the experiment's device where the component says 'auto',
    and every ``seed`` field (nested configs too) offset by the experiment's seed, so ``seed: N`` at the top of an
    experiment file retrains every component from other random draws (seed 0 leaves the components' own seeds)."""
    changes: dict[str, Any] = {}
    for name, value in vars(component).items():
        if name == "device" and value == "auto":
            changes[name] = device
        elif name == "seed" and isinstance(value, int):
            changes[name] = value + seed
        elif is_dataclass(value) and not isinstance(value, type):
            changes[name] = component_config(value, device, seed)
    return replace(component, **changes)  # type: ignore[type-var]
