"""Offline datasets: collect a task's source data into a local Minari dataset, and load any
Minari dataset (ours, or Minari's D4RL pointmaze data where the network allows) as episodes.

Writes are atomic: the dataset is built in a hidden temporary folder and renamed into place; the staging
folders of a collection that was killed are removed by the next one. A collected dataset records in its Minari
metadata what shaped it (the map, the dataset settings, size and seed), and loading it for a config that asks
for something else is refused, naming the field.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from pydantic import Field
from tqdm import tqdm

from mstt.agent.core.config import MAX_STEPS, Settings, config_file
from mstt.agent.core.io import check_writable, sigterm_as_interrupt
from mstt.agent.worlds import Episode, Task

DATASETS_ENV_VAR = "MINARI_DATASETS_PATH"
RECORD_KEY = "mstt_collected_with"
"""Key in a dataset's Minari metadata (metadata.json) under which collect records what shaped the data."""
STAGING_PREFIX = ".collect-"
"""Hidden staging folders in the datasets root: f"{STAGING_PREFIX}{pid}-{random}" while a collection runs."""


class DataSettings(Settings):
    root: str = "data"
    """Minari datasets folder (relative to the working directory). Left out of the config: $MINARI_DATASETS_PATH
    when that is set, else 'data' (experiment_root)."""
    transitions: int | None = Field(default=None, gt=0, le=MAX_STEPS)
    """Dataset size; None takes the source config's."""
    collect_if_missing: bool = True
    """Collect the source dataset first when it is not under root."""


class DatasetMismatchError(ValueError):
    """A dataset under the datasets root was collected with other settings than the config asks for."""


@dataclass(frozen=True)
class DatasetSummary:
    dataset_id: str
    path: Path
    transitions: int
    episodes: int
    goals_reached: int
    seconds: float

    @property
    def rate(self) -> float:
        """Transitions collected per second (wall clock, expert and env together)."""
        return self.transitions / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        return (
            f"dataset {self.dataset_id} at {self.path}\n"
            f"  transitions   {self.transitions:,}\n"
            f"  episodes      {self.episodes:,}\n"
            f"  goals reached {self.goals_reached:,} "
            f"({1000 * self.goals_reached / max(self.transitions, 1):.2f} per 1000 steps)\n"
            f"  collected in  {self.seconds:.1f} s ({self.rate:,.0f} transitions/s)"
        )


@contextlib.contextmanager
def datasets_root(root: Path | None) -> Iterator[None]:
    """Point Minari at `root` for the duration (Minari reads the variable on every call)."""
    if root is None:
        yield
        return
    previous = os.environ.get(DATASETS_ENV_VAR)
    os.environ[DATASETS_ENV_VAR] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DATASETS_ENV_VAR, None)
        else:
            os.environ[DATASETS_ENV_VAR] = previous


def default_root(out: str | Path | None) -> Path:
    """The datasets folder, absolute: --out, else $MINARI_DATASETS_PATH, else Minari's default."""
    if out is not None:
        return Path(out).resolve()
    if DATASETS_ENV_VAR in os.environ:
        return Path(os.environ[DATASETS_ENV_VAR]).resolve()
    return Path.home() / ".minari" / "datasets"


def experiment_root(settings: DataSettings) -> Path:
    """An experiment's datasets folder, absolute: data.root when the config (or one it extends) gives it, else
    $MINARI_DATASETS_PATH when set (Minari's own override), else data.root's default 'data'. The fingerprint keeps
    data.root as written, so where the folder is never changes a run's identity; the dataset record does."""
    if "root" not in settings.model_fields_set and DATASETS_ENV_VAR in os.environ:
        return Path(os.environ[DATASETS_ENV_VAR]).resolve()
    return Path(settings.root).resolve()


def dataset_record(task: Task, transitions: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Everything that shapes the task's source dataset, as plain JSON: task, name, variant, the task's
    ``source_data_fields`` (the map) and the ``dataset`` section, with the size and seed actually used."""
    config = task.config
    dataset = config.dataset.model_dump(mode="json", exclude={"dataset_id"})
    dataset["transitions"] = transitions or dataset["transitions"]
    dataset["seed"] = dataset["seed"] if seed is None else seed
    world = config.model_dump(mode="json", include=set(task.source_data_fields))
    return {"task": config.task, "name": config.name, "variant": config.variant, **world, "dataset": dataset}


def _differences(recorded: Any, expected: Any, field: str = "") -> list[tuple[str, Any, Any]]:
    """(field, recorded, expected) for every leaf where two records differ; a missing key counts as None."""
    if isinstance(recorded, Mapping) and isinstance(expected, Mapping):
        return [
            diff
            for key in sorted(set(recorded) | set(expected))
            for diff in _differences(recorded.get(key), expected.get(key), f"{field}.{key}" if field else key)
        ]
    return [] if recorded == expected else [(field, recorded, expected)]


def _check_record(dataset: Any, dataset_id: str, where: Path, expected: Mapping[str, Any]) -> None:
    """Refuse a dataset that was not shaped the way ``expected`` (a dataset_record) says. A dataset collected
    before datasets carried a record is checked on what Minari records: its total steps."""
    recorded = dataset.storage.metadata.get(RECORD_KEY)
    if recorded is None:
        recorded = {"dataset": {"transitions": int(dataset.total_steps)}}
        expected = {"dataset": {"transitions": expected["dataset"]["transitions"]}}
    differences = _differences(recorded, expected)
    if differences:
        shown = "; ".join(f"{field} = {have!r} (the config asks for {want!r})" for field, have, want in differences)
        raise DatasetMismatchError(
            f"dataset '{dataset_id}' under {where} was collected with {shown}: collect it again with `mstt collect "
            f"<source config> --out {where} --transitions {expected['dataset']['transitions']}` (it replaces the old "
            "one), or set data.root to another folder"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_staging(root: Path) -> list[Path]:
    """Remove the staging folders that killed collections left in ``root`` (their process is gone; a folder
    without a process id in its name predates them and is stale too); the ones of running collections stay."""
    removed = []
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        owner = re.match(rf"{re.escape(STAGING_PREFIX)}(\d+)-", folder.name)
        if owner is not None and _alive(int(owner.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _to_buffer(index: int, episode: Episode) -> EpisodeBuffer:
    return EpisodeBuffer(
        id=index,
        observations=episode.observations,
        actions=episode.actions,
        rewards=episode.rewards,
        terminations=episode.terminations,
        truncations=episode.truncations,
    )


def collect(
    task: Task,
    transitions: int | None = None,
    out: str | Path | None = None,
    seed: int | None = None,
    progress: bool = True,
    target_data: bool = False,
) -> DatasetSummary:
    """Run the task's scripted expert and write a Minari dataset under `out` (atomically). The folder is checked
    to be writable before the expert runs; SIGINT and SIGTERM leave no staging folder behind.

    ``target_data``: the task is a target world and the dataset is DARA's small action-labelled target dataset
    (``target_dataset_id``), the one dataset ever collected outside the source world; MSTT never reads it."""
    config = task.config
    if config.role != "source" and not target_data:
        raise ValueError(
            f"{config_file(config)}: variant '{config.variant}' is a {config.role} world: training data is only ever "
            "collected in the source world"
        )
    if target_data and config.role != "target":
        raise ValueError(f"{config_file(config)}: variant '{config.variant}' is not a target world")
    transitions = transitions or config.dataset.transitions
    seed = config.dataset.seed if seed is None else seed
    root = check_writable(default_root(out), "--out", "folder")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(root)
    dataset_id = target_dataset_id(task) if target_data else task.dataset_id
    with sigterm_as_interrupt():
        return _collect_into(task, transitions, seed, root, dataset_id, progress)


def target_dataset_id(task: Task) -> str:
    """The Minari id of DARA's target dataset of a target world: the source dataset's id with the variant added."""
    name, _, version = task.dataset_id.rpartition("-")
    return f"{name}-{task.config.variant}-target-{version}"


def _collect_into(
    task: Task, transitions: int, seed: int, root: Path, dataset_id: str, progress: bool
) -> DatasetSummary:
    config = task.config
    final_path = root / dataset_id
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=root))
    try:
        start = time.perf_counter()
        buffers, goals = [], 0
        with tqdm(total=transitions, unit="step", disable=not progress, desc="collect") as bar:
            for episode in task.source_episodes(transitions, seed):
                buffers.append(_to_buffer(len(buffers), episode))
                goals += episode.goals_reached
                bar.update(len(episode))
                bar.set_postfix(episodes=len(buffers), goals=goals)
        seconds = time.perf_counter() - start
        env = task.make_env()
        try:
            with datasets_root(staging):
                dataset = minari.create_dataset_from_buffers(
                    dataset_id=dataset_id,
                    buffer=buffers,
                    env=env.spec,
                    eval_env=env.spec,
                    algorithm_name=f"scripted-expert/{config.task}",
                    code_permalink="https://github.com/mstt/mstt",
                    author="mstt",
                    author_email="mstt@users.noreply.github.com",
                    description=f"Data of {config.task} '{config.name}' (variant {config.variant}), seed {seed}.",
                )
                dataset.storage.update_metadata({RECORD_KEY: dataset_record(task, transitions, seed)})
        finally:
            env.close()
        _replace_dir(staging / dataset_id, final_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DatasetSummary(dataset_id, final_path, transitions, len(buffers), goals, seconds)


def _replace_dir(source: Path, target: Path) -> None:
    """Move a finished dataset into place; an older one is removed only after the move."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
    os.replace(source, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class EpisodeArrays:
    """One loaded episode; T steps."""

    observations: np.ndarray
    """(T + 1, obs_dim) the env's 'observation' entry."""
    achieved_goal: np.ndarray
    """(T + 1, goal_dim)."""
    desired_goal: np.ndarray
    """(T + 1, goal_dim)."""
    actions: np.ndarray
    """(T, act_dim); a dataset of discrete actions (Discrete(n), the house) loads as (T, n) float32 one-hot rows,
    so that the skills see every world's actions as vectors (``action_vectors``)."""
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def head(self, steps: int) -> EpisodeArrays:
        """The first ``steps`` steps of the episode (all of it when it is shorter)."""
        states = slice(0, steps + 1)
        return EpisodeArrays(
            self.observations[states], self.achieved_goal[states], self.desired_goal[states], self.actions[:steps],
            self.rewards[:steps], self.terminations[:steps], self.truncations[:steps],
        )  # fmt: skip


def action_vectors(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """A dataset's stored actions as the skills read them: (T, n) float32 one-hot rows of a Discrete(n) action space
    (the env still takes the integer), anything else as stored."""
    if isinstance(space, gym.spaces.Discrete):
        index = np.asarray(actions, dtype=np.int64).reshape(-1) - int(space.start)
        return np.eye(int(space.n), dtype=np.float32)[index]
    return np.asarray(actions)


def discrete_actions(task: Task) -> int | None:
    """n for a task whose env takes one of n discrete actions (a Discrete(n) space: the house), None otherwise."""
    env = task.make_env()
    try:
        space = env.action_space
    finally:
        env.close()
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else None


def load_episodes(
    dataset_id: str, root: str | Path | None = None, expected: Mapping[str, Any] | None = None
) -> list[EpisodeArrays]:
    """Load a local Minari dataset (ours or Minari's D4RL pointmaze ones) as episode arrays, discrete actions as
    one-hot rows (``action_vectors``). ``expected`` (a dataset_record): refuse a dataset shaped otherwise
    (DatasetMismatchError naming the field)."""
    with datasets_root(None if root is None else default_root(root)):
        try:
            dataset = minari.load_dataset(dataset_id)
        except (FileNotFoundError, ValueError) as err:
            where = default_root(root)
            raise FileNotFoundError(
                f"dataset '{dataset_id}' not found under {where}: run `mstt collect CONFIG --out {where}` first ({err})"
            ) from None
        if expected is not None:
            _check_record(dataset, dataset_id, default_root(root), expected)
        episodes, space = [], dataset.action_space
        for ep in dataset.iterate_episodes():
            obs = ep.observations
            episodes.append(
                EpisodeArrays(
                    observations=np.asarray(obs["observation"]),
                    achieved_goal=np.asarray(obs["achieved_goal"]),
                    desired_goal=np.asarray(obs["desired_goal"]),
                    actions=action_vectors(ep.actions, space),
                    rewards=np.asarray(ep.rewards),
                    terminations=np.asarray(ep.terminations),
                    truncations=np.asarray(ep.truncations),
                )
            )
    return episodes
