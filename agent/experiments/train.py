"""`mstt train`: everything learned offline from the SOURCE dataset only, stage by stage —
tokenizer, then critic and generator on its tokens, then the BC baseline, and (when the config has an
``executor_dds`` section) the DDS skills that can execute MSTT's plans, then the optional baselines and (a
``localizer`` section, the house) the frame -> pose localizer of pixel observations — into one run folder.

A finished stage leaves a checkpoint that later runs reuse; a stage killed midway resumes from
its last periodic training checkpoint. The run folder records the experiment's fingerprint and
resolved config, refuses to mix stages trained under another config, and ends with a model card
(agent/experiments/hub.py: what a run folder holds, `mstt push`, runs loaded from the Hub).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mstt.agent.core.config import config_file
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
from mstt.agent.worlds.data import (
    DatasetMismatchError,
    EpisodeArrays,
    collect,
    dataset_record,
    discrete_actions,
    experiment_root,
    load_episodes,
    target_dataset_id,
)
from mstt.agent.worlds.house import HouseTask
from mstt.agent.worlds.house_frames import source_frames
from mstt.skills.bc import BCPolicy, train_bc
from mstt.skills.checkpoint import CONFIG_NAME
from mstt.skills.critic import MaskedCritic, build_skill_transitions, train_critic
from mstt.skills.dara import DomainClassifiers, augment_rewards, train_domain_classifiers
from mstt.skills.dds import DDSSkills, skill_windows, train_skills
from mstt.skills.diffuser import Diffuser, train_diffuser
from mstt.skills.generator import TrajectoryGenerator, generator_windows, train_generator
from mstt.skills.iql import IQLLearner, train_iql
from mstt.skills.localizer import Localizer, train_localizer
from mstt.skills.masks import token_sequence
from mstt.skills.planner import PlannerConfig, SkillPlanner
from mstt.skills.relabel import primitive_transitions
from mstt.skills.tokenizer import SkillTokenizer, train_tokenizer
from mstt.skills.windows import position_windows

__all__ = ["DATA_FILE", "LOCALIZER_STAGE", "RUN_FILE", "DataStats", "Models", "RunMismatchError",
           "check_baseline_stages", "check_run_matches", "dara_stage_name", "load_models", "source_data", "target_data",
           "train", "train_only", "trained_stages", "transfer_stages"]  # fmt: skip


@dataclass(frozen=True)
class DataStats:
    """What evaluation needs to know about the training data (saved in the run folder)."""

    dataset_id: str
    transitions: int
    episodes: int
    step_length: float
    """Median per-step displacement of the positions, over the steps that moved: a demo is resampled to this
    spacing."""
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
    diffuser: Diffuser | None = None
    """The Diffuser baseline; None when the run has no diffuser stage."""
    dara: dict[str, IQLLearner] = field(default_factory=dict)
    """DARA's IQL policies by stage name (``dara_stage_name``)."""
    localizer: Localizer | None = None
    """The house's frame -> pose localizer (pixel observations); None when the run has no localizer stage."""

    def dara_policy(self, variant: str, share: float) -> IQLLearner | None:
        return self.dara.get(dara_stage_name(variant, share))

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
    steps = steps[steps > 0]  # a step that moved nothing (a turn on the spot in the house) says nothing of the pace
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


# --------------------------------------------------------------------------------------------------------------
# The paper's baselines: Diffuser on the source data; DARA per target variant and target share


def _train_diffuser(inputs: StageInputs[SourceData]) -> Trained:
    """Diffuser over whole source trajectories (its horizon: at least a route's length)."""
    config = inputs.data.config
    assert config.diffuser is not None
    episodes = [{"observations": e.observations, "actions": e.actions} for e in inputs.data.episodes]
    diffuser, report = train_diffuser(episodes, _with_device(config.diffuser, config), inputs.progress, inputs.loop())
    diffuser.save_pretrained(inputs.folder)
    return Trained(diffuser, report, str(diffuser.device))


DIFFUSER_STAGE: Stage[SourceData] = Stage(
    "diffuser", _train_diffuser, lambda run: Diffuser.from_pretrained(run / "diffuser")
)
DARA_PREFIX = "dara-"


def dara_stage_name(variant: str, share: float) -> str:
    """dara-VARIANT-Npct: the folder of DARA's policy for one target variant and target share."""
    return f"{DARA_PREFIX}{variant}-{round(share * 100)}pct"


def target_data(experiment: Experiment, variant: str, progress: bool) -> list[EpisodeArrays]:
    """DARA's target dataset of one variant, collected by the source expert in the target world (the largest share
    of dara.shares, with dara.seed) when missing; a dataset of another map or size is refused, naming both."""
    assert experiment.config.dara is not None
    settings = experiment.config.dara
    task = make_task(experiment.targets[variant])
    root = experiment_root(experiment.config.data)
    transitions = round(max(settings.shares) * experiment.config.data.transitions)
    expected = dataset_record(task, transitions, settings.seed)
    dataset_id, variant_file = target_dataset_id(task), config_file(task.config)
    try:
        return load_episodes(dataset_id, root, expected)
    except DatasetMismatchError as err:
        raise DatasetMismatchError(
            f"{experiment.path}: dara: the target dataset of variant {variant} ({variant_file}) does not fit it: {err}"
        ) from None
    except FileNotFoundError:
        if not experiment.config.data.collect_if_missing:
            raise FileNotFoundError(
                f"{experiment.path}: dara needs target dataset '{dataset_id}' of variant {variant} ({variant_file}) "
                f"under {root}, and data.collect_if_missing is false: set it true to collect the dataset"
            ) from None
    check_writable(root, "data.root", "folder")
    print(f"DARA's target dataset {target_dataset_id(task)} not under {root}: collecting it")
    print(collect(task, transitions, root, settings.seed, progress, target_data=True))
    return load_episodes(target_dataset_id(task), root, expected)


def _one_step(episodes: list[EpisodeArrays], gamma: float) -> dict[str, Any]:
    """One-step goal-conditioned transitions (a reached goal ends its stretch, as in `mstt offline`)."""
    dicts = [
        {"observations": e.observations, "actions": e.actions, "rewards": e.rewards, "goals": e.desired_goal,
         "terminals": np.asarray(e.terminations, dtype=bool) | (np.asarray(e.rewards) > 0)}
        for e in episodes
    ]  # fmt: skip
    return primitive_transitions(dicts, gamma)


def _first_transitions(episodes: list[EpisodeArrays], count: int) -> list[EpisodeArrays]:
    """The first ``count`` transitions, the last episode cut short (so a smaller share is a prefix of a larger)."""
    kept, total = [], 0
    for episode in episodes:
        if total >= count:
            break
        kept.append(episode.head(count - total))
        total += len(kept[-1].actions)
    return kept


def dara_stages(experiment: Experiment) -> tuple[Stage[SourceData], ...]:
    """Per target variant and share: the domain classifiers, then IQL on augmented source + target transitions."""
    settings = experiment.config.dara
    if settings is None:
        return ()
    loaded: dict[str, list[EpisodeArrays]] = {}

    def target(variant: str, inputs: StageInputs[SourceData]) -> list[EpisodeArrays]:
        if variant not in loaded:
            loaded[variant] = target_data(experiment, variant, inputs.progress)
        return loaded[variant]

    def classifiers(variant: str, share: float) -> Callable[[StageInputs[SourceData]], Trained]:
        def train(inputs: StageInputs[SourceData]) -> Trained:
            config = inputs.data.config
            count = round(share * inputs.data.stats.transitions)
            target_steps = _one_step(_first_transitions(target(variant, inputs), count), 1.0)
            source_steps = _one_step(inputs.data.episodes, 1.0)
            model, report = train_domain_classifiers(
                source_steps, target_steps, _with_device(settings.classifiers, config), inputs.progress, inputs.loop()
            )
            model.save_pretrained(inputs.folder)
            return Trained(model, report, str(model.device))

        return train

    def policy(variant: str, share: float, classifier_stage: str) -> Callable[[StageInputs[SourceData]], Trained]:
        def train(inputs: StageInputs[SourceData]) -> Trained:
            config = inputs.data.config
            iql_config = _with_device(settings.iql, config)
            count = round(share * inputs.data.stats.transitions)
            target_episodes = _first_transitions(target(variant, inputs), count)
            source_steps = _one_step(inputs.data.episodes, iql_config.gamma)
            classifier: DomainClassifiers = inputs.models[classifier_stage]
            rewards = source_steps["returns"]
            source_steps["returns"] = augment_rewards(
                classifier, source_steps["observations"], source_steps["actions"], source_steps["next_observations"],
                rewards,
            )  # fmt: skip
            target_steps = _one_step(target_episodes, iql_config.gamma)
            joined = {k: np.concatenate([source_steps[k], target_steps[k]]) for k in source_steps}
            choices = discrete_actions(make_task(experiment.targets[variant]))
            if choices is not None:  # the classifiers read one-hot rows; IQL takes the action's index
                joined["actions"] = joined["actions"].argmax(axis=1)
            learner, report = train_iql(joined, iql_config, "continuous" if choices is None else "discrete", choices,
                                        progress=inputs.progress, settings=inputs.loop(), name=inputs.name)  # fmt: skip
            learner.save_pretrained(inputs.folder)
            shift = source_steps["returns"] - rewards
            numbers = {"iql": report, "target_transitions": int(sum(len(e.actions) for e in target_episodes)),
                       "reward_shift_mean": float(shift.mean()), "reward_shift_min": float(shift.min())}  # fmt: skip
            return Trained(learner, numbers, str(learner.device))

        return train

    stages: list[Stage[SourceData]] = []
    for variant in experiment.targets:
        for share in settings.shares:
            name = dara_stage_name(variant, share)
            first = f"{name}-classifiers"
            stages.append(
                Stage(
                    first, classifiers(variant, share), lambda run, n=first: DomainClassifiers.from_pretrained(run / n)
                )
            )
            stages.append(
                Stage(
                    name,
                    policy(variant, share, first),
                    lambda run, n=name: IQLLearner.from_pretrained(run / n),
                    needs=(first,),
                )
            )
    return tuple(stages)


def baseline_stages(experiment: Experiment) -> tuple[Stage[SourceData], ...]:
    """The optional baseline stages of this experiment's config (its diffuser and dara sections)."""
    diffuser = (DIFFUSER_STAGE,) if experiment.config.diffuser is not None else ()
    return diffuser + dara_stages(experiment)


# --------------------------------------------------------------------------------------------------------------
# The house's localizer: egocentric frames of the source house -> the agent's pose (pixel observations)

LOCALIZER_STAGE = "localizer"


def localizer_stages(experiment: Experiment) -> tuple[Stage[SourceData], ...]:
    """The localizer stage when the config has a localizer section: it renders its frames of the source house first
    when they are not under data.root (agent/worlds/house_frames.py), then fits the CNN to them."""
    settings = experiment.config.localizer
    if settings is None:
        return ()

    def train(inputs: StageInputs[SourceData]) -> Trained:
        task = make_task(experiment.source)
        assert isinstance(task, HouseTask)  # load_experiment allows the section for egocentric worlds only
        root = experiment_root(experiment.config.data)
        frames = source_frames(task, settings.frames, root, inputs.progress)
        model, report = train_localizer(
            frames.frames, frames.poses, _with_device(settings.model, experiment.config), inputs.loop()
        )
        model.save_pretrained(inputs.folder)
        trained_on = {"frames": settings.frames.frames, "every": settings.frames.every, "seed": settings.frames.seed}
        return Trained(model, {"trained_on": trained_on, **asdict(report)}, str(model.device))

    return (Stage(LOCALIZER_STAGE, train, lambda run: Localizer.from_pretrained(run / LOCALIZER_STAGE)),)


def check_baseline_stages(run: Path, experiment: Experiment) -> None:
    """A baseline stage the run already holds must have been trained with this experiment's section: refuse one
    trained with other settings, naming the stage and the first field that differs (the device may differ)."""
    config = experiment.config
    sections: dict[str, Any] = {}
    if config.diffuser is not None:
        sections[DIFFUSER_STAGE.name] = _with_device(config.diffuser, config)
    if config.dara is not None:
        for variant in experiment.targets:
            for share in config.dara.shares:
                name = dara_stage_name(variant, share)
                sections[f"{name}-classifiers"] = _with_device(config.dara.classifiers, config)
                sections[name] = _with_device(config.dara.iql, config)
    if config.localizer is not None:
        sections[LOCALIZER_STAGE] = _with_device(config.localizer.model, config)
    for name, expected in sections.items():
        saved_file = run / name / CONFIG_NAME
        if not saved_file.exists():
            continue
        saved = json.loads(saved_file.read_text()).get("config")
        if not isinstance(saved, dict):  # not a component checkpoint: loading it reports what is wrong
            continue
        wanted = json.loads(json.dumps(asdict(expected)))  # as config.json holds it: tuples become lists
        differs = [k for k in wanted if k != "device" and saved.get(k) != wanted[k]]
        if differs:
            key = differs[0]
            raise RunMismatchError(
                f"{run / name} was trained with {key}={saved.get(key)!r}, {experiment.label} asks for "
                f"{key}={wanted[key]!r}: use a new --run folder or delete {run / name}"
            )


def transfer_stages(experiment: Experiment) -> tuple[Stage[SourceData], ...]:
    """The stages a run of this experiment trains, in order: MSTT's, the DDS executor when configured, then the
    configured baselines and the localizer."""
    dds = (DDS_STAGE,) if experiment.config.executor_dds is not None else ()
    return TRANSFER_STAGES + dds + baseline_stages(experiment) + localizer_stages(experiment)


def trained_stages(experiment: Experiment) -> tuple[str, ...]:
    """The names of the stages a run of this experiment holds when finished."""
    return tuple(stage.name for stage in transfer_stages(experiment))


def train(experiment: Experiment, run: Path, progress: bool = True) -> Models:
    """Train (or resume) every stage; return the trained models. A finished run is only checked and loaded: it
    needs neither the dataset nor a writable folder."""
    stages = transfer_stages(experiment)
    if (run / DATA_FILE).exists() and all_done(stages, run):
        check_run_matches(run, experiment, remedy="use a new --run folder")
        check_baseline_stages(run, experiment)
        return load_models(run)
    check_run_folder(run, experiment)
    check_baseline_stages(run, experiment)
    data = _source_stage_data(experiment, run, progress)
    models = train_stages(stages, run, lambda: data, experiment.config.train.checkpoint_every, progress)
    return Models(
        models["tokenizer"], models["critic"], models["generator"], models["bc"], data.stats,
        models.get(DDS_STAGE.name), models.get(DIFFUSER_STAGE.name),
        {name: model for name, model in models.items() if isinstance(model, IQLLearner)},
        models.get(LOCALIZER_STAGE),
    )  # fmt: skip


def train_only(experiment: Experiment, run: Path, names: list[str], progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or load) only the named stages of the experiment and the stages they need, e.g. a
    baseline into a run whose MSTT stages train elsewhere. Returns their models by name."""
    stages = {stage.name: stage for stage in transfer_stages(experiment)}
    unknown = [name for name in names if name not in stages]
    if unknown:
        raise ValueError(f"--stages: {experiment.path} has no stage(s) {unknown}; its stages are {list(stages)}")
    wanted = set(names)
    for name in names:
        wanted.update(stages[name].needs)
    check_run_folder(run, experiment)
    check_baseline_stages(run, experiment)
    chosen = [stage for name, stage in stages.items() if name in wanted]
    return train_stages(chosen, run, lambda: _source_stage_data(experiment, run, progress),
                        experiment.config.train.checkpoint_every, progress)  # fmt: skip


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
    diffuser = Diffuser.from_pretrained(run / DIFFUSER_STAGE.name, device=device) if DIFFUSER_STAGE.done(run) else None
    dara = {
        folder.name: IQLLearner.from_pretrained(folder, device="cpu")
        for folder in sorted(run.glob(f"{DARA_PREFIX}*"))
        if (folder / CONFIG_NAME).exists() and not folder.name.endswith("-classifiers")
    }  # a flat policy fed numpy, like BC: it acts on the CPU
    localizer_folder = run / LOCALIZER_STAGE
    localizer = Localizer.from_pretrained(localizer_folder) if (localizer_folder / CONFIG_NAME).exists() else None
    return Models(
        SkillTokenizer.from_pretrained(run / "tokenizer", device=device),
        MaskedCritic.from_pretrained(run / "critic", device=device),
        generator,
        BCPolicy.from_pretrained(run / "bc"),
        stats,
        dds_skills,
        diffuser,
        dara,
        localizer,
    )


def _with_device(component: Any, config: Any) -> Any:
    """The component config with the experiment's device (unless the component names its own) and seed."""
    return component_config(component, config.train.device, config.seed)
