"""`mstt train`: everything learned offline from the SOURCE dataset only, stage by stage —
tokenizer, then critic and generator on its tokens, then the BC baseline, and (when the config has an
``executor_dds`` section) the DDS skills that can execute MSTT's plans — into one run folder.

A finished stage leaves a checkpoint that later runs reuse; a stage killed midway resumes from
its last periodic training checkpoint. The run folder records the experiment's fingerprint and
refuses to mix stages trained under another config.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mstt.agent.worlds.data import EpisodeArrays, collect, dataset_record, experiment_root, load_episodes
from mstt.agent.core.io import check_writable, write_json_atomic
from mstt.agent.experiments.experiment import Experiment, component_config
from mstt.agent.worlds import Task, make_task
from mstt.skills.bc import BCPolicy, train_bc
from mstt.skills.critic import MaskedCritic, build_skill_transitions, train_critic
from mstt.skills.dds import DDSSkills, skill_windows, train_skills
from mstt.skills.generator import TrajectoryGenerator, generator_windows, train_generator
from mstt.skills.masks import token_sequence
from mstt.skills.planner import PlannerConfig, SkillPlanner
from mstt.skills.tokenizer import SkillTokenizer, train_tokenizer
from mstt.skills.training import LoopSettings
from mstt.skills.windows import position_windows

RUN_FILE = "run.json"
DATA_FILE = "data.json"
STAGES = ("tokenizer", "critic", "generator", "bc")
"""Stages every run trains; DDS_STAGE is trained too when the config has an executor_dds section."""
DDS_STAGE = "dds_skills"


class RunMismatchError(ValueError):
    """The run folder was trained under a different experiment config."""


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


def _check_run_folder(run: Path, experiment: Experiment) -> None:
    """Make ``run`` a run folder of this experiment (or check that it is one), after checking it can be written."""
    check_writable(run, "--run", "folder")
    run.mkdir(parents=True, exist_ok=True)
    record = run / RUN_FILE
    if record.exists():
        check_run_matches(run, experiment, remedy="use a new --run folder")
        return
    write_json_atomic({"fingerprint": experiment.fingerprint(), "config": experiment.label}, record)


def check_run_matches(
    run: Path, experiment: Any, remedy: str = "evaluate it with the config it was trained with"
) -> None:
    """Refuse a run folder trained under another experiment's training settings (or not trained at all)."""
    record = run / RUN_FILE
    if not record.exists():
        raise FileNotFoundError(f"{run} is not a run folder ({RUN_FILE} missing): run `mstt train` into it first")
    saved = json.loads(record.read_text())
    if saved.get("fingerprint") != experiment.fingerprint():
        raise RunMismatchError(
            f"{run} was trained with config {saved.get('config')} (fingerprint {saved.get('fingerprint')}); "
            f"{experiment.label} differs in its training settings (fingerprint {experiment.fingerprint()}): {remedy}"
        )


def trained_stages(experiment: Experiment) -> tuple[str, ...]:
    """The stages a run of this experiment holds when finished."""
    return STAGES + ((DDS_STAGE,) if experiment.config.executor_dds is not None else ())


def train(experiment: Experiment, run: Path, progress: bool = True) -> Models:
    """Train (or resume) every stage; return the trained models. A finished run is only checked and loaded: it
    needs neither the dataset nor a writable folder."""
    stages = trained_stages(experiment)
    if (run / DATA_FILE).exists() and all((run / stage / "config.json").exists() for stage in stages):
        check_run_matches(run, experiment, remedy="use a new --run folder")
        return load_models(run)
    _check_run_folder(run, experiment)
    config = experiment.config
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
    stride = config.train.windows_stride
    horizon = config.tokenizer.horizon

    def loop(stage: str) -> LoopSettings:
        return LoopSettings(run / ".training" / stage, config.train.checkpoint_every, progress)

    def stage_done(stage: str) -> bool:
        return (run / stage / "config.json").exists()

    def report(stage: str, data: dict[str, Any], started: float) -> None:
        # CPU results depend on the thread count (it changes the order of float reductions): recorded for reproduction
        data = {**data, "seconds": time.perf_counter() - started, "torch_threads": torch.get_num_threads()}
        write_json_atomic(data, run / "reports" / f"{stage}.json")
        if progress:
            print(f"{stage}: " + ", ".join(f"{k}={_short(v)}" for k, v in data.items()))

    # 1. Skill tokenizer on position windows.
    if stage_done("tokenizer"):
        tokenizer = SkillTokenizer.from_pretrained(run / "tokenizer")
    else:
        started = time.perf_counter()
        windows = np.concatenate([position_windows(p, horizon, stride) for p in positions])
        tokenizer, tok_report = train_tokenizer(
            windows, _with_device(config.tokenizer, config), progress, loop("tokenizer")
        )
        tokenizer.save_pretrained(run / "tokenizer")
        report("tokenizer", asdict(tok_report), started)
    tokens = [token_sequence(p, tokenizer, stride) for p in positions]

    # 2. Masked-Bellman critic on skill transitions (hindsight goals drawn inside).
    if stage_done("critic"):
        critic = MaskedCritic.from_pretrained(run / "critic")
    else:
        started = time.perf_counter()
        transitions = build_skill_transitions(
            [{"observations": e.observations, "positions": p} for e, p in zip(episodes, positions)],
            tokens,
            horizon,
            stride,
            tokenizer.codebook_size,
        )
        critic, critic_report = train_critic(
            transitions, _with_device(config.critic, config), progress=progress, settings=loop("critic")
        )
        critic.save_pretrained(run / "critic")
        report("critic", asdict(critic_report), started)

    # 3. Diffusion generator of H-step observation-action sub-trajectories.
    if stage_done("generator"):
        generator = TrajectoryGenerator.from_pretrained(run / "generator")
    else:
        started = time.perf_counter()
        gen_episodes = [{"observations": e.observations, "actions": e.actions} for e in episodes]
        windows, starts = generator_windows(gen_episodes, horizon, stride)
        goals = None
        if config.generator.goal_conditioned:
            goals = np.concatenate(
                [e.desired_goal[: len(e.actions) - horizon + 1 : stride] for e in episodes]
            )
        generator, gen_report = train_generator(
            windows, starts, _with_device(config.generator, config), goals=goals, progress=progress,
            settings=loop("generator"),
        )
        generator.save_pretrained(run / "generator")
        report("generator", asdict(gen_report), started)

    # 4. Behaviour cloning baseline.
    if stage_done("bc"):
        bc = BCPolicy.from_pretrained(run / "bc")
    else:
        started = time.perf_counter()
        bc = train_bc(
            np.concatenate([e.observations[:-1] for e in episodes]),
            np.concatenate([e.desired_goal[:-1] for e in episodes]),
            np.concatenate([e.actions for e in episodes]),
            _with_device(config.bc, config),
            loop("bc"),
        )
        bc.save_pretrained(run / "bc")
        report("bc", {"steps": config.bc.steps}, started)

    # 5. Optional: DDS skills (encoder + closed-loop action decoder) as an executor of MSTT's plans.
    dds_skills = None
    if config.executor_dds is not None:
        if stage_done(DDS_STAGE):
            dds_skills = DDSSkills.from_pretrained(run / DDS_STAGE)
        else:
            started = time.perf_counter()
            dds_config = _with_device(config.executor_dds, config)
            windows = skill_windows(
                [{"observations": e.observations, "actions": e.actions} for e in episodes],
                dds_config.horizon,
                dds_config.window_stride,
            )
            dds_skills, dds_report = train_skills(
                windows, dds_config, episodes[0].observations.shape[1], progress, loop(DDS_STAGE)
            )
            dds_skills.save_pretrained(run / DDS_STAGE)
            report(DDS_STAGE, asdict(dds_report), started)
    return Models(tokenizer, critic, generator, bc, stats, dds_skills)


def load_models(run: Path, device: str | None = None) -> Models:
    """The trained models of a finished run folder, on ``device`` (default: the device each was trained for,
    'auto' meaning CUDA when available). BC, a small MLP fed numpy, stays where it was saved. The optional DDS
    skills are loaded when the run has them, beside the generator (they execute its plans)."""
    missing = [stage for stage in STAGES if not (run / stage / "config.json").exists()]
    if missing:
        raise FileNotFoundError(f"{run}: stages {missing} are not trained; run `mstt train` first")
    stats = DataStats(**json.loads((run / DATA_FILE).read_text()))
    generator = TrajectoryGenerator.from_pretrained(run / "generator", device=device)
    dds_skills = None
    if (run / DDS_STAGE / "config.json").exists():
        dds_skills = DDSSkills.from_pretrained(run / DDS_STAGE, device=device or str(generator.device))
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


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
