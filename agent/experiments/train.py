"""`mstt train`: everything learned offline from the SOURCE dataset only, stage by stage —
tokenizer, then critic and generator on its tokens, then the BC baseline, and (when the config has an
``executor_dds`` section) the DDS skills that can execute MSTT's plans — into one run folder.

A finished stage leaves a checkpoint that later runs reuse; a stage killed midway resumes from
its last periodic training checkpoint. The run folder records the experiment's fingerprint and
resolved config, refuses to mix stages trained under another config, and ends with a model card
(agent/experiments/hub.py: what a run folder holds, `mstt push`, runs loaded from the Hub).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mstt.agent.core.io import check_writable, write_json_atomic
from mstt.agent.experiments.experiment import Experiment, ExperimentConfig, component_config
from mstt.agent.experiments.hub import DATA_FILE
from mstt.agent.experiments.stages import (
    RUN_FILE,
    RunMismatchError,
    Stage,
    StageInputs,
    Trained,
    all_done,
    check_run_folder,
    check_run_matches,
    train_stages,
)
from mstt.agent.worlds import Task, make_task
from mstt.agent.worlds.data import EpisodeArrays, collect, dataset_record, experiment_root, load_episodes
from mstt.skills.bc import BCPolicy, train_bc
from mstt.skills.critic import MaskedCritic, build_skill_transitions, train_critic
from mstt.skills.dds import DDSSkills, skill_windows, train_skills
from mstt.skills.generator import TrajectoryGenerator, generator_windows, train_generator
from mstt.skills.masks import token_sequence
from mstt.skills.planner import PlannerConfig, SkillPlanner
from mstt.skills.tokenizer import SkillTokenizer, train_tokenizer
from mstt.skills.windows import position_windows

__all__ = ["DATA_FILE", "RUN_FILE", "DataStats", "Models", "RunMismatchError", "check_run_matches", "load_models",
           "source_data", "train", "trained_stages", "transfer_stages"]  # fmt: skip


@dataclass(frozen=True)
class DataStats:
    """What evaluation needs to know about the training data (saved in the run folder)."""

    dataset_id: str
    transitions: int
    episodes: int
    step_length: float
    """Median per-step displacement of the positions: a demo is resampled to this spacing."""
    dt: float
    """Control period of the env (seconds per step)."""


@dataclass(frozen=True)
class Models:
    tokenizer: SkillTokenizer
    critic: MaskedCritic
    generator: TrajectoryGenerator
    bc: BCPolicy
    stats: DataStats
    dds_skills: DDSSkills | None = None
    """DDS encoder + action decoder (the mstt_dds executor); None when the run has no dds_skills stage."""

    def planner(self, config: PlannerConfig, critic: Any = None) -> SkillPlanner:
        """A planner over these models; ``critic`` replaces the learned one (e.g. a constant critic)."""
        return SkillPlanner(self.generator, self.tokenizer, critic or self.critic, config)


def source_data(experiment: Experiment, progress: bool = True) -> tuple[Task, list[EpisodeArrays]]:
    """The source dataset, collected first if it is missing and the config allows it; a dataset collected with
    other settings than the experiment asks for (size, noise, map, seed) is refused (agent/data.py)."""
    task = make_task(experiment.source)
    settings = experiment.config.data
    root = experiment_root(settings)
    expected = dataset_record(task, settings.transitions)
    try:
        return task, load_episodes(task.dataset_id, root, expected)
    except FileNotFoundError:
        if not settings.collect_if_missing:
            raise
    check_writable(root, "data.root", "folder")
    print(f"dataset {task.dataset_id} not under {root}: collecting it first")
    print(collect(task, settings.transitions, root, progress=progress))
    return task, load_episodes(task.dataset_id, root, expected)


@dataclass(frozen=True)
class SourceData:
    """What the transfer stages train on: the source episodes and their positions."""

    config: ExperimentConfig
    episodes: list[EpisodeArrays]
    positions: list[np.ndarray]
    """(T + 1, P) positions of each episode."""
    stats: DataStats


def _source_stage_data(experiment: Experiment, run: Path, progress: bool) -> SourceData:
    """Load the source data and record its statistics in the run folder."""
    task, episodes = source_data(experiment, progress)
    positions = [task.positions(e.observations) for e in episodes]
    steps = np.concatenate([np.linalg.norm(np.diff(p, axis=0), axis=1) for p in positions])
    stats = DataStats(
        dataset_id=task.dataset_id,
        transitions=int(sum(len(e.actions) for e in episodes)),
        episodes=len(episodes),
        step_length=float(np.median(steps)),
        dt=task.control_dt,
    )
    write_json_atomic(asdict(stats), run / DATA_FILE)
    return SourceData(experiment.config, episodes, positions, stats)


# --------------------------------------------------------------------------------------------------------------
# The stages, in training order


def _train_tokenizer(inputs: StageInputs[SourceData]) -> Trained:
    """Skill tokenizer on position windows."""
    config = inputs.data.config
    windows = np.concatenate(
        [position_windows(p, config.tokenizer.horizon, config.train.windows_stride) for p in inputs.data.positions]
    )
    tokenizer, report = train_tokenizer(windows, _with_device(config.tokenizer, config), inputs.progress, inputs.loop())
    tokenizer.save_pretrained(inputs.folder)
    return Trained(tokenizer, report, str(tokenizer.device))


def _train_critic(inputs: StageInputs[SourceData]) -> Trained:
    """Masked-Bellman critic on skill transitions (hindsight goals drawn inside)."""
    data, config = inputs.data, inputs.data.config
    tokenizer: SkillTokenizer = inputs.models["tokenizer"]
    stride = config.train.windows_stride
    tokens = [token_sequence(p, tokenizer, stride) for p in data.positions]
    transitions = build_skill_transitions(
        [{"observations": e.observations, "positions": p} for e, p in zip(data.episodes, data.positions)],
        tokens,
        config.tokenizer.horizon,
        stride,
        tokenizer.codebook_size,
    )
    critic, report = train_critic(
        transitions, _with_device(config.critic, config), progress=inputs.progress, settings=inputs.loop()
    )
    critic.save_pretrained(inputs.folder)
    return Trained(critic, report, str(critic.device))


def _train_generator(inputs: StageInputs[SourceData]) -> Trained:
    """Diffusion generator of H-step observation-action sub-trajectories (H: the tokenizer's)."""
    episodes, config = inputs.data.episodes, inputs.data.config
    horizon, stride = config.tokenizer.horizon, config.train.windows_stride
    windows, starts = generator_windows(
        [{"observations": e.observations, "actions": e.actions} for e in episodes], horizon, stride
    )
    goals = None
    if config.generator.goal_conditioned:
        goals = np.concatenate([e.desired_goal[: len(e.actions) - horizon + 1 : stride] for e in episodes])
    generator, report = train_generator(
        windows, starts, _with_device(config.generator, config), goals=goals, progress=inputs.progress,
        settings=inputs.loop(),
    )  # fmt: skip
    generator.save_pretrained(inputs.folder)
    return Trained(generator, report, str(generator.device))


def _train_bc(inputs: StageInputs[SourceData]) -> Trained:
    """Goal-conditioned behaviour cloning baseline."""
    episodes, config = inputs.data.episodes, inputs.data.config
    bc = train_bc(
        np.concatenate([e.observations[:-1] for e in episodes]),
        np.concatenate([e.desired_goal[:-1] for e in episodes]),
        np.concatenate([e.actions for e in episodes]),
        _with_device(config.bc, config),
        inputs.loop(),
    )
    bc.save_pretrained(inputs.folder)
    return Trained(bc, {"steps": config.bc.steps}, str(bc.input_mean.device))


def _train_dds_skills(inputs: StageInputs[SourceData]) -> Trained:
    """DDS skills (encoder + closed-loop action decoder) that execute MSTT's plans (eval method mstt_dds)."""
    episodes, config = inputs.data.episodes, inputs.data.config
    assert config.executor_dds is not None
    dds_config = _with_device(config.executor_dds, config)
    windows = skill_windows(
        [{"observations": e.observations, "actions": e.actions} for e in episodes],
        dds_config.horizon,
        dds_config.window_stride,
    )
    state_dim = episodes[0].observations.shape[1]
    skills, report = train_skills(windows, dds_config, state_dim, inputs.progress, inputs.loop())
    skills.save_pretrained(inputs.folder)
    return Trained(skills, report, str(skills.decoder.device))


TRANSFER_STAGES: tuple[Stage[SourceData], ...] = (
    Stage("tokenizer", _train_tokenizer, lambda run: SkillTokenizer.from_pretrained(run / "tokenizer")),
    Stage("critic", _train_critic, lambda run: MaskedCritic.from_pretrained(run / "critic"), needs=("tokenizer",)),
    Stage("generator", _train_generator, lambda run: TrajectoryGenerator.from_pretrained(run / "generator")),
    Stage("bc", _train_bc, lambda run: BCPolicy.from_pretrained(run / "bc")),
)
"""Stages every run trains, in order; DDS_STAGE follows when the config has an executor_dds section."""
DDS_STAGE: Stage[SourceData] = Stage(
    "dds_skills", _train_dds_skills, lambda run: DDSSkills.from_pretrained(run / "dds_skills")
)
STAGES: tuple[str, ...] = tuple(stage.name for stage in TRANSFER_STAGES)


def transfer_stages(experiment: Experiment) -> tuple[Stage[SourceData], ...]:
    """The stages a run of this experiment trains, in order."""
    return TRANSFER_STAGES + ((DDS_STAGE,) if experiment.config.executor_dds is not None else ())


def trained_stages(experiment: Experiment) -> tuple[str, ...]:
    """The names of the stages a run of this experiment holds when finished."""
    return tuple(stage.name for stage in transfer_stages(experiment))


def train(experiment: Experiment, run: Path, progress: bool = True) -> Models:
    """Train (or resume) every stage; return the trained models. A finished run is only checked and loaded: it
    needs neither the dataset nor a writable folder."""
    stages = transfer_stages(experiment)
    if (run / DATA_FILE).exists() and all_done(stages, run):
        check_run_matches(run, experiment, remedy="use a new --run folder")
        return load_models(run)
    check_run_folder(run, experiment)
    data = _source_stage_data(experiment, run, progress)
    models = train_stages(stages, run, lambda: data, experiment.config.train.checkpoint_every, progress)
    return Models(
        models["tokenizer"], models["critic"], models["generator"], models["bc"], data.stats,
        models.get(DDS_STAGE.name),
    )  # fmt: skip


def load_models(run: Path, device: str | None = None) -> Models:
    """The trained models of a finished run folder, on ``device`` (default: the device each was trained for,
    'auto' meaning CUDA when available). BC, a small MLP fed numpy, stays where it was saved. The optional DDS
    skills are loaded when the run has them, beside the generator (they execute its plans)."""
    missing = [stage.name for stage in TRANSFER_STAGES if not stage.done(run)]
    if missing:
        raise FileNotFoundError(f"{run}: stages {missing} are not trained; run `mstt train` first")
    stats = DataStats(**json.loads((run / DATA_FILE).read_text()))
    generator = TrajectoryGenerator.from_pretrained(run / "generator", device=device)
    dds_skills = None
    if DDS_STAGE.done(run):
        dds_skills = DDSSkills.from_pretrained(run / DDS_STAGE.name, device=device or str(generator.device))
    return Models(
        SkillTokenizer.from_pretrained(run / "tokenizer", device=device),
        MaskedCritic.from_pretrained(run / "critic", device=device),
        generator,
        BCPolicy.from_pretrained(run / "bc"),
        stats,
        dds_skills,
    )


def _with_device(component: Any, config: Any) -> Any:
    """The component config with the experiment's device (unless the component names its own) and seed."""
    return component_config(component, config.train.device, config.seed)

