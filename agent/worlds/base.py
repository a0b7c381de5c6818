"""The Task interface every task family implements, and the episode record experts produce.

A new family (a Habitat adapter, say) is one new file with a class satisfying `Task`, registered
in agent/worlds/families.py; data collection, demos and evaluation only ever see this interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from mstt.agent.core.demo import Demo


@dataclass
class Episode:
    """One stored episode: T steps, T + 1 observations (GoalEnv dict observations)."""

    observations: dict[str, np.ndarray]
    """Keys observation / achieved_goal / desired_goal, each (T + 1, dim) float64."""
    actions: np.ndarray
    """(T, act_dim) float32, the actions the env executed (after clipping); (T,) int64 in a world with discrete
    actions (a Discrete(n) action space: the house), which loading a dataset turns into (T, n) one-hot rows
    (agent/worlds/data.py)."""
    rewards: np.ndarray
    """(T,) float64, the env's own reward."""
    terminations: np.ndarray
    truncations: np.ndarray
    goals_reached: int
    """How many times the expert reached its current goal in this episode."""

    def __len__(self) -> int:
        return len(self.actions)


class EpisodeRecorder:
    """Preallocated buffers for one episode of a GoalEnv (avoids a million list appends). ``act_dim`` None: the
    env's actions are discrete, stored as (T,) int64."""

    def __init__(self, steps: int, first_obs: dict[str, np.ndarray], act_dim: int | None) -> None:
        self.observations = {
            key: np.empty((steps + 1, value.shape[0]), dtype=np.float64) for key, value in first_obs.items()
        }
        for key, value in first_obs.items():
            self.observations[key][0] = value
        self.actions = (
            np.empty(steps, dtype=np.int64) if act_dim is None else np.empty((steps, act_dim), dtype=np.float32)
        )
        self.rewards = np.empty(steps, dtype=np.float64)
        self.terminations = np.zeros(steps, dtype=bool)
        self.goals_reached = 0

    def record(self, t: int, obs: dict[str, np.ndarray], action: np.ndarray | int, reward: float, term: bool) -> None:
        for key, value in obs.items():
            self.observations[key][t + 1] = value
        self.actions[t] = action
        self.rewards[t] = reward
        self.terminations[t] = term

    def finish(self) -> Episode:
        truncations = np.zeros_like(self.terminations)
        truncations[-1] = not self.terminations[-1]
        return Episode(
            self.observations,
            self.actions,
            self.rewards,
            self.terminations,
            truncations,
            self.goals_reached,
        )


@dataclass(frozen=True)
class PathCheck:
    """How a demo's path fits a variant's geometry, segment by segment (the straight line between two points)."""

    refusal: str | None = None
    """Why the path cannot be a route of this variant (through a blocked cell or a zone, across a wall into another
    corridor), naming the first offending segment in world and cell coordinates; None when it can be."""
    warnings: tuple[str, ...] = ()
    """Where an accepted path clips a wall corner or grazes a zone, and by how much."""


COLLISION_KEY = "collision"
"""info key of a step the body was stopped by a wall or furniture (bool), for envs whose body can be stopped (the
house); evaluation counts those steps."""
SEGMENT_RESOLUTION = 0.02
"""Distance (world units) between the samples a path check takes along each demo segment: finer than the maze
agent's radius (0.1) and the Fetch zones' thinnest side (4 cm)."""


def segment_samples(a: np.ndarray, b: np.ndarray, resolution: float = SEGMENT_RESOLUTION) -> np.ndarray:
    """(n, P) points from a to b inclusive, at most ``resolution`` apart."""
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / resolution)) + 1)
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


class Task(Protocol):
    """A task variant: builds its env, generates source data and scripted demos, renders."""

    config: Any
    pos_dim: int
    """Dimension of the positions a demo carries (2 for the maze, 3 for Fetch)."""
    source_data_fields: tuple[str, ...]
    """Config fields besides the ``dataset`` section that shape the source data (the map, a pinned goal): a
    collected dataset records them, and loading it for a config that differs in one is refused (agent/data.py)."""

    @property
    def dataset_id(self) -> str: ...

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The evaluation env of this variant (fixed start and goal where the config sets them)."""
        ...

    def reset_options(self) -> dict[str, Any] | None:
        """Options for env.reset that pin the variant's start and goal (None: the env's own)."""
        ...

    def source_episodes(self, transitions: int, seed: int) -> Iterator[Episode]:
        """Scripted-expert episodes, the D4RL way, totalling `transitions` steps."""
        ...

    def scripted_demo(self, seed: int = 0) -> Demo:
        """An observation-only demo of this variant's open route, from the scripted expert."""
        ...

    def positions(self, observations: np.ndarray) -> np.ndarray:
        """(N, obs_dim) observations -> (N, pos_dim) positions a demo would show."""
        ...

    def render_frame(self, env: gym.Env) -> np.ndarray:
        """An RGB frame (H, W, 3) uint8 of the env's current state."""
        ...

    def set_goal(self, env: gym.Env, position: np.ndarray) -> None:
        """Move the env's goal to a world position (a goal read from an instruction)."""
        ...

    def observation(self, env: gym.Env) -> dict[str, np.ndarray]:
        """The env's current observation dict, without stepping."""
        ...

    @property
    def control_dt(self) -> float:
        """Seconds of simulated time per env step (a demo's timestamps are resampled to it)."""
        ...

    success_key: str
    """The env's info key that flags success ('success' for PointMaze, 'is_success' for Fetch)."""

    def violation(self, positions: np.ndarray) -> np.ndarray:
        """(..., P) positions -> (...) bool: touching what this variant forbids (blocked cells, zones)."""
        ...

    def outside(self, positions: np.ndarray) -> np.ndarray:
        """(..., P) positions -> (...) bool: where no agent can be (off the map, inside a wall, off the workspace);
        a demo with such points is refused."""
        ...

    def check_path(self, points: np.ndarray, breaks: list[int]) -> PathCheck:
        """Check the segments of a (K, P) demo path (except those across ``breaks``) against this variant's walls,
        blocked cells and zones, with the variant's ``demo_clip_depth`` as the tolerance for clipped corners."""
        ...

    follow_lookahead: float
    """How far ahead along a path (world units) a path follower aims: the demo_tracker baseline."""

    demo_scale: float
    """The world's natural unit of a route (a maze cell; a few centimetres on the Fetch table): demo corruptions
    are sized in it."""

    def track(self, obs: np.ndarray, next_state: np.ndarray, plan_action: np.ndarray) -> np.ndarray:
        """Low-level tracking of a planned sub-trajectory: (E, S) current observations, (E, S) the
        plan's next state and (E, A) its action -> (E, A) actions to execute ((E,) integers in a world of discrete
        actions, whose plans carry one-hot actions)."""
        ...
