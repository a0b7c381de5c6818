"""`mstt offline`: standard offline RL on one source dataset. DDS (discrete diffusion skills), IQL over primitive
actions and BC train on the same data and are evaluated in the same run, many episodes at once in a vector env.

Goal conditioning: the PointMaze data carry the desired goal of every step, so the IQL critics, the DDS high level
and BC read the observation concatenated with desired_goal. The data are one never-reset stream in which a new
goal is drawn whenever the current one is reached (D4RL's maze2d recipe); with ``goal_terminals`` a step whose
sparse reward is 1 (the goal reached) is treated as terminal, because the goal the agent was conditioned on is
replaced right after it. Evaluation keeps D4RL's convention: a fixed goal per episode, a continuing task, and the
return counts the steps spent within the goal radius.

Metrics per method: success rate with a 95% Wilson interval, raw return, and the D4RL-normalised score
100 * (R - random) / (expert - random) with the maze2d-v1 reference returns. Gymnasium's PointMaze-v3 is close to
but not the same simulator as D4RL's maze2d-v1 (mujoco version, goal noise, start sampling), so the normalised
score is indicative, not comparable digit for digit with published tables.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import model_validator

from mstt.agent.core.config import ConfigError, Override, Settings, TaskConfig, describe_overrides
from mstt.agent.core.io import portable_path, write_json_atomic
from mstt.agent.core.provenance import provenance
from mstt.agent.experiments.controllers import (
    Controller,
    PolicyController,
    make_vector_env,
    rollout,
    summarise,
    tensor_policy,
)
from mstt.agent.experiments.experiment import TrainSettings, component_config, load_experiment_file
from mstt.agent.experiments.stages import (
    REPORTS_DIR,
    Stage,
    StageInputs,
    Trained,
    all_done,
    check_run_folder,
    check_run_matches,
    train_stages,
)
from mstt.agent.experiments.train import source_data
from mstt.agent.worlds import make_task
from mstt.agent.worlds.data import DataSettings, EpisodeArrays
from mstt.skills.bc import BCConfig, BCPolicy, train_bc
from mstt.skills.dds import DDSAgent, DDSConfig, DDSSkills, train_dds
from mstt.skills.iql import IQLConfig, IQLLearner, train_iql
from mstt.skills.relabel import primitive_transitions

OfflineMethod = Literal["dds", "iql", "bc", "d3rlpy_iql", "d3rlpy_bc"]
ALL_OFFLINE_METHODS: tuple[OfflineMethod, ...] = ("dds", "iql", "bc")
"""The methods `mstt offline` trains (and evaluates by default)."""
EXTERNAL_OFFLINE_METHODS: tuple[OfflineMethod, ...] = ("d3rlpy_iql", "d3rlpy_bc")
"""Policies trained outside mstt and only evaluated here: a TorchScript file RUN/<method>/policy.pt."""
EXTERNAL_POLICY_FILE = "policy.pt"
EXTERNAL_POLICY_SCRIPT = "results/offline-rl-d3rlpy/run_seed.sh"

# D4RL's reference returns of the random and the expert policy (d4rl/infos.py, REF_MIN_SCORE / REF_MAX_SCORE):
#   maze2d-umaze-v1 23.85 / 161.86, maze2d-medium-v1 13.13 / 277.39, maze2d-large-v1 6.7 / 273.99.
D4RL_MAZE2D_REFERENCE: dict[str, tuple[float, float, str]] = {
    "umaze": (23.85, 161.86, "maze2d-umaze-v1"),
    "medium": (13.13, 277.39, "maze2d-medium-v1"),
    "large": (6.7, 273.99, "maze2d-large-v1"),
}


class ReferenceScores(Settings):
    random: float
    """Return of a random policy (the score's 0)."""
    expert: float
    """Return of an expert policy (the score's 100)."""
    source: str = "config"
    """Where the numbers come from."""

    @model_validator(mode="after")
    def _check(self) -> ReferenceScores:
        if not self.expert > self.random:
            raise ValueError(f"expert ({self.expert}) must exceed random ({self.random})")
        return self


class OfflineEvalSettings(Settings):
    episodes: int = 100
    """Episodes per method."""
    n_envs: int = 50
    """Environments stepped together."""
    methods: list[OfflineMethod] = list(ALL_OFFLINE_METHODS)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> OfflineEvalSettings:
        if self.episodes < 1 or self.n_envs < 1:
            raise ValueError(f"episodes ({self.episodes}) and n_envs ({self.n_envs}) must be >= 1")
        return self


class OfflineConfig(Settings):
    experiment: Literal["offline"]
    source: str
    """The source variant config whose dataset everything trains on (relative to this file)."""
    seed: int = 0
    goal_terminals: bool = True
    """Treat a step that reaches the desired goal (reward > 0) as terminal; see the module doc string."""
    data: DataSettings = DataSettings()
    train: TrainSettings = TrainSettings()
    dds: DDSConfig = DDSConfig()
    iql: IQLConfig = IQLConfig()
    """The primitive-action IQL baseline (H = 1, deterministic AWR actor)."""
    bc: BCConfig = BCConfig()
    eval: OfflineEvalSettings = OfflineEvalSettings()
    reference: ReferenceScores | None = None
    """Random / expert returns for the normalised score; default: D4RL's maze2d-v1 ones for builtin mazes."""


@dataclass(frozen=True)
class OfflineExperiment:
    config: OfflineConfig
    path: Path
    source: TaskConfig
    overrides: tuple[str, ...] = ()
    """The command-line overrides applied to the file ('--seed 1', '--set dds.decoder.kind=mlp')."""

    @property
    def label(self) -> str:
        """The config as the command line named it: the file, then its overrides."""
        return " ".join((str(self.path), *self.overrides))

    def fingerprint(self) -> str:
        """Hash of everything that shapes training; a run folder refuses a different one."""
        relevant = {
            "kind": "offline",
            "source": self.source.model_dump(),
            "data": self.config.data.model_dump(),
            "seed": self.config.seed,
            "goal_terminals": self.config.goal_terminals,
            **{k: asdict(getattr(self.config, k)) for k in ("dds", "iql", "bc")},
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]

    def reference(self) -> ReferenceScores | None:
        if self.config.reference is not None:
            return self.config.reference
        builtin = getattr(self.source, "builtin", None)
        if builtin in D4RL_MAZE2D_REFERENCE:
            low, high, name = D4RL_MAZE2D_REFERENCE[builtin]
            return ReferenceScores(random=low, expert=high, source=f"D4RL {name} (d4rl/infos.py)")
        return None

    def with_device(self, device: str) -> OfflineExperiment:
        """The same experiment trained on ``device``; the fingerprint is unchanged (device is not in it)."""
        train = self.config.train.model_copy(update={"device": device})
        return replace(self, config=self.config.model_copy(update={"train": train}))


def load_offline_experiment(path: str | Path, overrides: Sequence[Override] = ()) -> OfflineExperiment:
    """Load and validate an offline-RL experiment YAML (``experiment: offline``), changed by ``overrides``
    (agent/config.py), and its source config."""
    path, config, source = load_experiment_file(
        path,
        "offline",
        OfflineConfig,
        "e.g. configs/offline/umaze.yaml; MSTT transfer configs go to train/eval",
        overrides,
    )
    if source.task != "maze":
        raise ConfigError(f"{path}: field 'source' = {config.source!r}: offline RL supports maze tasks only")
    return OfflineExperiment(config, path, source, describe_overrides(overrides))


# --------------------------------------------------------------------------------------------------------------
# Data


def episode_dicts(episodes: list[EpisodeArrays], goal_terminals: bool) -> list[dict[str, np.ndarray]]:
    """Loaded episodes -> the dicts DDS and relabelling read (observations, actions, rewards, terminals, goals)."""
    out = []
    for e in episodes:
        terminals = np.asarray(e.terminations, dtype=bool)
        if goal_terminals:
            terminals = terminals | (np.asarray(e.rewards) > 0)
        out.append({
            "observations": e.observations.astype(np.float32), "actions": e.actions.astype(np.float32),
            "rewards": e.rewards.astype(np.float32), "terminals": terminals,
            "goals": e.desired_goal.astype(np.float32),
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class OfflineModels:
    dds: DDSAgent | None
    iql: IQLLearner | None
    bc: BCPolicy | None

    def of(self, method: str) -> Any:
        """The trained model of ``method`` (None when it was not trained)."""
        return {"dds": self.dds, "iql": self.iql, "bc": self.bc}[method]


@dataclass(frozen=True)
class OfflineData:
    """What the offline stages train on."""

    config: OfflineConfig
    episodes: list[dict[str, np.ndarray]]
    """episode_dicts of the source data."""


def _train_dds(inputs: StageInputs[OfflineData]) -> Trained:
    """DDS: skills, relabelled skill transitions, IQL over skills. A run killed after its skills reuses them."""
    config = inputs.data.config
    dds_config = component_config(config.dds, config.train.device, config.seed)
    skills = None
    if (inputs.folder / "skills" / "config.json").exists():
        skills = DDSSkills.from_pretrained(inputs.folder / "skills")
    dds, report = train_dds(inputs.data.episodes, dds_config, inputs.progress, inputs.loop, skills)
    if skills is None:
        dds.skills.save_pretrained(inputs.folder / "skills")
    dds.high_level.save_pretrained(inputs.folder / "high_level")
    return Trained(dds, report, str(dds.skills.decoder.device))


def _train_iql(inputs: StageInputs[OfflineData]) -> Trained:
    """IQL over primitive actions (H = 1)."""
    config = inputs.data.config
    iql_config = component_config(config.iql, config.train.device, config.seed)
    data = primitive_transitions(inputs.data.episodes, iql_config.gamma)
    iql, report = train_iql(data, iql_config, "continuous", progress=inputs.progress, settings=inputs.loop())
    iql.save_pretrained(inputs.folder)
    return Trained(iql, report, str(iql.device))


def _train_bc(inputs: StageInputs[OfflineData]) -> Trained:
    """Goal-conditioned behaviour cloning."""
    config, episodes = inputs.data.config, inputs.data.episodes
    bc = train_bc(
        np.concatenate([e["observations"][:-1] for e in episodes]),
        np.concatenate([e["goals"][:-1] for e in episodes]),
        np.concatenate([e["actions"] for e in episodes]),
        component_config(config.bc, config.train.device, config.seed), inputs.loop(),
    )  # fmt: skip
    bc.save_pretrained(inputs.folder)
    return Trained(bc, {"steps": config.bc.steps}, str(bc.input_mean.device))


def _load_dds(run: Path, seed: int) -> DDSAgent:
    return DDSAgent.from_pretrained(run / "dds", seed=seed)


def offline_stages(experiment: OfflineExperiment, methods: Sequence[str]) -> tuple[Stage[OfflineData], ...]:
    """The stages of ``methods``, in the table's order (one stage per method, named like it)."""
    seed = experiment.config.seed
    table: tuple[Stage[OfflineData], ...] = (
        Stage("dds", _train_dds, partial(_load_dds, seed=seed), done_folder="dds/high_level"),
        Stage("iql", _train_iql, lambda run: IQLLearner.from_pretrained(run / "iql")),
        Stage("bc", _train_bc, lambda run: BCPolicy.from_pretrained(run / "bc")),
    )
    return tuple(stage for stage in table if stage.name in methods)


def train_offline(
    experiment: OfflineExperiment, run: Path, methods: list[str] | None = None, progress: bool = True
) -> OfflineModels:
    """Train (or resume, or reuse) every requested method's models into the run folder; a run that holds them all
    is only checked, not written."""

    config = experiment.config
    stages = offline_stages(experiment, list(methods or config.eval.methods))
    if all_done(stages, run):
        check_run_matches(run, experiment, remedy="use a new --run folder")

    def data() -> OfflineData:
        check_run_folder(run, experiment)
        _, loaded = source_data(experiment, progress)  # type: ignore[arg-type]  # duck-typed: source + config.data
        return OfflineData(config, episode_dicts(loaded, config.goal_terminals))

    models = train_stages(stages, run, data, config.train.checkpoint_every, progress)
    return OfflineModels(models.get("dds"), models.get("iql"), models.get("bc"))


# --------------------------------------------------------------------------------------------------------------
# Evaluation


class DDSController:
    """The evaluate.Controller protocol over a DDSAgent: a skill per env every H steps, decoded closed loop."""

    def __init__(self, agent: DDSAgent, seed: int) -> None:
        self.agent, self.seed, self.fallback_rate = agent, seed, None
        self._episode = 0

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        self.agent.reset(len(obs["observation"]), seed=self.seed + self._episode)
        self._episode += 1

    def planned_states(self, env: int) -> np.ndarray | None:
        return None  # DDS decodes actions from a skill code; it plans no states to draw

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.agent.act(obs["observation"], obs["desired_goal"])


def _skills_used(agent: DDSAgent) -> dict[str, Any]:
    chosen = np.concatenate(agent.chosen) if agent.chosen else np.zeros(0, np.int64)
    return {"skills_used": int(len(np.unique(chosen)))}


def _no_extras(model: Any) -> dict[str, Any]:
    return {}


def load_external_policy(run: Path, method: str) -> torch.jit.ScriptModule:
    """The TorchScript policy of an outside method (d3rlpy's save_policy): RUN/<method>/policy.pt, on the CPU."""
    path = run / method / EXTERNAL_POLICY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no exported policy for --methods {method}; train it first with {EXTERNAL_POLICY_SCRIPT} "
            f"(d3rlpy in its own venv, results/offline-rl-d3rlpy/setup.sh), which writes it there"
        )
    return torch.jit.load(str(path), map_location="cpu").eval()


def _torchscript_act(policy: torch.jit.ScriptModule):  # type: ignore[no-untyped-def]
    """(B, S) observations, (B, G) goals -> (B, A) actions of a policy that reads observation ++ goal."""

    def act(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.concatenate([obs, goal], axis=-1), dtype=torch.float32)
        return policy(x).numpy()

    return act


@dataclass(frozen=True)
class OfflineEvalMethod:
    """How a trained offline method runs in evaluation."""

    controller: Callable[[Any, int], Controller]
    """(its trained model, eval seed) -> the controller that acts."""
    extras: Callable[[Any], dict[str, Any]] = _no_extras
    """(its trained model, after the episodes) -> metrics of this method only."""
    load: Callable[[Path], Any] | None = None
    """(run folder) -> the model of a method trained outside `mstt offline` (no stage); None: a stage trains it."""


def _external_method(method: str) -> OfflineEvalMethod:
    """An outside method: its TorchScript policy, loaded from the run folder, acts on observation ++ goal."""
    return OfflineEvalMethod(
        lambda policy, seed: PolicyController(_torchscript_act(policy)),
        load=partial(load_external_policy, method=method),
    )


OFFLINE_EVAL: dict[str, OfflineEvalMethod] = {
    "dds": OfflineEvalMethod(DDSController, _skills_used),
    "iql": OfflineEvalMethod(lambda learner, seed: PolicyController(tensor_policy(learner.act))),
    "bc": OfflineEvalMethod(lambda bc, seed: PolicyController(bc.act)),
    **{method: _external_method(method) for method in EXTERNAL_OFFLINE_METHODS},
}
"""Every offline method by name: ALL_OFFLINE_METHODS (training stage in offline_stages) and
EXTERNAL_OFFLINE_METHODS (loaded from the run folder)."""


def normalised_score(value: float, reference: ReferenceScores) -> float:
    """D4RL's normalisation: 0 = random policy, 100 = expert."""
    return 100.0 * (value - reference.random) / (reference.expert - reference.random)


def evaluate_offline(
    experiment: OfflineExperiment,
    run: Path,
    episodes: int | None = None,
    json_path: Path | None = None,
    methods: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train what is missing, then evaluate every method on the same seeds; returns (and writes) the metrics."""

    config = experiment.config
    methods = list(methods or config.eval.methods)
    unknown = sorted(set(methods) - set(OFFLINE_EVAL))
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(OFFLINE_EVAL)}")
    episodes = episodes or config.eval.episodes
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    loaded = {m: load(run) for m in methods if (load := OFFLINE_EVAL[m].load) is not None}  # fail before training
    started = time.perf_counter()
    trained = [m for m in methods if m not in loaded]
    models = train_offline(experiment, run, trained, progress) if trained else OfflineModels(None, None, None)
    train_seconds = time.perf_counter() - started
    task = make_task(experiment.source)
    reference = experiment.reference()
    venv = make_vector_env(task, min(config.eval.n_envs, episodes))
    results: dict[str, Any] = {}
    try:
        for method in methods:
            spec = OFFLINE_EVAL[method]
            model = loaded[method] if method in loaded else models.of(method)
            controller = spec.controller(model, config.eval.seed)
            began = time.perf_counter()
            with torch.no_grad():
                outcomes = rollout(task, venv, controller, episodes, config.eval.seed, progress, desc=method)
            summary = summarise(outcomes, None, None)
            returns = np.array([o.episode_return for o in outcomes])
            entry = {
                "success_rate": summary.goal_rate,
                "success_ci95": list(summary.goal_ci95),
                "return_mean": summary.return_mean,
                "return_std": float(returns.std()),
                "normalised_score": normalised_score(summary.return_mean, reference) if reference else None,
                "steps_to_goal_mean": summary.steps_mean,
                "eval_seconds": time.perf_counter() - began,
            }
            results[method] = {**entry, **spec.extras(model)}
    finally:
        venv.close()
    reports = {p.stem: json.loads(p.read_text()) for p in sorted((run / REPORTS_DIR).glob("*.json"))}
    result = {
        "experiment": portable_path(experiment.path),
        "overrides": list(experiment.overrides),
        "task": experiment.source.task,
        "source": experiment.source.name,
        "episodes": episodes,
        "episode_steps": experiment.source.episode_steps,
        "decoder": config.dds.decoder.kind,
        "reference": reference.model_dump() if reference else None,
        "methods": results,
        "training": reports,
        "train_or_load_seconds": train_seconds,
        "provenance": provenance(
            {"experiment": config.model_dump(mode="json"), "source": experiment.source.model_dump(mode="json")},
            {"experiment": config.seed, "eval": config.eval.seed},
            ", ".join(sorted({str(r["device"]) for r in reports.values() if "device" in r})) or config.train.device,
        ),
    }
    if json_path is not None:
        write_json_atomic(result, json_path)
    return result


__all__ = ["D4RL_MAZE2D_REFERENCE", "EXTERNAL_OFFLINE_METHODS", "OfflineConfig", "OfflineExperiment",
           "evaluate_offline", "load_external_policy", "load_offline_experiment", "normalised_score",
           "train_offline"]  # fmt: skip
