"""Pixel-only observations: the agent sees rendered frames and nothing else, and the same skills run from pixels: our
stand-in for the paper's Habitat runs, which cannot be installed here. The maze's top-down frame gives its state
(position and velocity) and the goal through the camera calibration (perception.state); the house's egocentric frame
gives its pose through the trained localizer stage (skills/localizer.py).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from mstt.agent.worlds import FAMILIES, Task
from mstt.perception import PerceptionError, Scene, estimate_position
from mstt.skills.localizer import FloorMap, Localizer, PoseFilter, PoseTracker

TRUE_POSITION_KEY = "true_achieved_goal"
"""info key holding the simulator's own position: read by the evaluator for metrics, never by the agent."""
DEFAULT_VELOCITY_FRAMES = 5
"""Velocity = (p_t - p_{t-k}) / (k dt): one pixel of centre error (~0.03 world units) over a single 0.01 s step
would be ~3 units/s of velocity noise; over 5 steps it is ~0.6."""


class PixelObservation(gym.Wrapper):
    """Replace the env's state observation by what the top-down frame shows.

    ``observation`` = (x, y, vx, vy) estimated from frames, ``achieved_goal`` = the estimated position,
    ``desired_goal`` = the goal marker read off the first frame of the episode. The simulator's position goes to
    ``info[TRUE_POSITION_KEY]`` so the evaluator can score the episode honestly.
    """

    def __init__(self, env: gym.Env, task: Task, velocity_frames: int = DEFAULT_VELOCITY_FRAMES) -> None:

        super().__init__(env)
        if velocity_frames < 1:
            raise ValueError(f"velocity_frames must be >= 1, got {velocity_frames!r}")
        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError("PixelObservation needs an env made with render_mode='rgb_array'")
        self.task = task
        self.scene = Scene.from_task(task)
        self.dt = float(task.control_dt)
        self.history: deque[np.ndarray] = deque(maxlen=velocity_frames + 1)
        self.goal = np.zeros(task.pos_dim)
        self.hidden_frames = 0
        """Frames in which the agent's marker could not be found (its position was carried on)."""

    def _position(self) -> np.ndarray:
        """The marker's position in the current frame; where it is hidden (a wall's side can cover the ball in
        the perspective view), the last estimate carried on by its velocity, and the frame is counted."""

        try:
            return estimate_position(self.task.render_frame(self.env), self.scene)
        except PerceptionError:
            if not self.history:
                raise
            self.hidden_frames += 1
            return self.history[-1] + self._velocity() * self.dt

    def _velocity(self) -> np.ndarray:
        """(p_newest - p_oldest) / their time apart over the kept frames; zero from a single frame."""
        frames = len(self.history) - 1
        if frames == 0:
            return np.zeros_like(self.history[0])
        return (self.history[-1] - self.history[0]) / (frames * self.dt)

    def _observe(self, true_obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        position = self._position()
        self.history.append(position)
        velocity = self._velocity()
        # MuJoCo draws the body where the previous physics step left it: advance by one step of velocity
        estimate = position + velocity * self.dt
        dtype = true_obs["observation"].dtype
        return {
            "observation": np.concatenate([estimate, velocity]).astype(dtype),
            "achieved_goal": estimate.astype(dtype),
            "desired_goal": self.goal.astype(dtype),
        }

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.history.clear()
        observed = self.scene.observe(self.task.render_frame(self.env))
        if observed.goal is None:
            raise RuntimeError("no goal marker visible in the first frame; pixel mode needs the red goal ball")
        self.goal = np.asarray(observed.goal, dtype=float)
        info[TRUE_POSITION_KEY] = obs["achieved_goal"].copy()
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info[TRUE_POSITION_KEY] = obs["achieved_goal"].copy()
        return self._observe(obs), reward, terminated, truncated, info


@runtime_checkable
class EgocentricView(Protocol):
    """A task whose env shows the agent's own view (the house)."""

    def render_egocentric(self, env: gym.Env) -> np.ndarray:
        """(H, W, 3) uint8: what the agent sees."""
        ...


def egocentric_families() -> list[str]:
    """The world families whose Task renders the agent's own view (EgocentricView): their pixel mode is that view,
    located by the trained localizer stage; the others' (the maze) is the top-down frame, read by perception."""
    return sorted(name for name, (task_class, _) in FAMILIES.items() if issubclass(task_class, EgocentricView))


class EgocentricTask(EgocentricView, FloorMap, Protocol):
    """A task whose env shows the agent's own view, whose actions move the pose predictably and whose map the agent
    is given (the house)."""


class LocalizedObservation(gym.Wrapper):
    """Replace the house's pose (GPS + compass) by what its egocentric frames show: every reset and step renders the
    agent's view and the trained localizer reads a pose off it (x, z, cos h, sin h); ``pose_filter`` tracks the pose
    over the episode from these readings, the actions taken (the agent knows its own actions) and the map.

    ``observation`` = the estimate, ``achieved_goal`` = its position, ``desired_goal`` = the env's goal position (the
    task names its goal: a point-goal task; perception reads goals off instructions, not off this view). The
    simulator's position goes to ``info[TRUE_POSITION_KEY]``, so goal, failure and cost are measured on the truth.
    """

    def __init__(self, env: gym.Env, task: EgocentricTask, localizer: Localizer, pose_filter: PoseFilter) -> None:
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError("LocalizedObservation needs an env made with render_mode='rgb_array'")
        self.task, self.localizer, self.pose_filter = task, localizer, pose_filter
        self.rng = np.random.default_rng(pose_filter.seed)
        self.tracker: PoseTracker | None = None
        self.frame = np.zeros(0, dtype=np.uint8)

    def _read(self) -> np.ndarray:
        """(4,) the localizer's reading of the current frame (kept in ``frame``)."""
        self.frame = self.task.render_egocentric(self.env)
        return self.localizer.locate(self.frame[None])[0]

    def _observe(self, true_obs: dict[str, np.ndarray], estimate: np.ndarray) -> dict[str, np.ndarray]:
        dtype = true_obs["observation"].dtype
        return {
            "observation": estimate.astype(dtype),
            "achieved_goal": estimate[:2].astype(dtype),
            "desired_goal": true_obs["desired_goal"].copy(),
        }

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if kwargs.get("seed") is not None:  # each env and episode draws its own particles, reproducibly
            self.rng = np.random.default_rng([self.pose_filter.seed, kwargs["seed"]])
        self.tracker = self.pose_filter.track(self.task, self._read(), self.rng)
        info[TRUE_POSITION_KEY] = obs["achieved_goal"].copy()
        return self._observe(obs, self.tracker.estimate), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.tracker is None:
            raise RuntimeError("LocalizedObservation.step before reset: the pose is tracked from the first frame on")
        obs, reward, terminated, truncated, info = self.env.step(action)
        last = self.frame
        reading = self._read()
        estimate = self.tracker.step(int(action), reading, still=bool(np.array_equal(self.frame, last)))
        info[TRUE_POSITION_KEY] = obs["achieved_goal"].copy()
        return self._observe(obs, estimate), reward, terminated, truncated, info
