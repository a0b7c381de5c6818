"""Offline datasets: collect a task's source data into a local Minari dataset, and load any
Minari dataset (ours, or Minari's D4RL pointmaze data where the network allows) as episodes.

Writes are atomic: the dataset is built in a hidden temporary folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm import tqdm

from agent.tasks import Episode, Task

DATASETS_ENV_VAR = "MINARI_DATASETS_PATH"


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
) -> DatasetSummary:
    """Run the task's scripted expert and write a Minari dataset under `out` (atomically)."""
    config = task.config
    if config.role != "source":
        raise ValueError(
            f"variant '{config.variant}' is a {config.role} world: training data is only ever "
            "collected in the source world"
        )
    transitions = transitions or config.dataset.transitions
    seed = config.dataset.seed if seed is None else seed
    root = default_root(out)
    root.mkdir(parents=True, exist_ok=True)
    final_path = root / task.dataset_id
    staging = Path(tempfile.mkdtemp(prefix=".collect-", dir=root))
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
                minari.create_dataset_from_buffers(
                    dataset_id=task.dataset_id,
                    buffer=buffers,
                    env=env.spec,
                    eval_env=env.spec,
                    algorithm_name=f"scripted-expert/{config.task}",
                    code_permalink="https://github.com/mstt/mstt",
                    author="mstt",
                    author_email="mstt@users.noreply.github.com",
                    description=f"Source data of {config.task} '{config.name}' "
                    f"(variant {config.variant}), seed {seed}.",
                )
        finally:
            env.close()
        _replace_dir(staging / task.dataset_id, final_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DatasetSummary(task.dataset_id, final_path, transitions, len(buffers), goals, seconds)


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
    """(T, act_dim)."""
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray


def load_episodes(dataset_id: str, root: str | Path | None = None) -> list[EpisodeArrays]:
    """Load a local Minari dataset (ours or Minari's D4RL pointmaze ones) as episode arrays."""
    with datasets_root(None if root is None else default_root(root)):
        try:
            dataset = minari.load_dataset(dataset_id)
        except (FileNotFoundError, ValueError) as err:
            where = default_root(root)
            raise FileNotFoundError(
                f"dataset '{dataset_id}' not found under {where}: run `mstt collect CONFIG "
                f"--out {where}` first ({err})"
            ) from None
        episodes = []
        for ep in dataset.iterate_episodes():
            obs = ep.observations
            episodes.append(
                EpisodeArrays(
                    observations=np.asarray(obs["observation"]),
                    achieved_goal=np.asarray(obs["achieved_goal"]),
                    desired_goal=np.asarray(obs["desired_goal"]),
                    actions=np.asarray(ep.actions),
                    rewards=np.asarray(ep.rewards),
                    terminations=np.asarray(ep.terminations),
                    truncations=np.asarray(ep.truncations),
                )
            )
    return episodes
