"""FetchReach-v4 with forbidden zones: axis-aligned boxes the gripper must not enter.

The zones are a check on the gripper position (the simulator itself is untouched), reported in
`info` each step; the source data comes from a noisy P-controller that also makes detours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

import gymnasium as gym
import gymnasium_robotics
import numpy as np
from gymnasium_robotics.envs.fetch.fetch_env import DEFAULT_CAMERA_CONFIG

from mstt.agent.core.camera import FreeCamera
from mstt.agent.core.config import (
    FETCH_WORKSPACE_HIGH,
    FETCH_WORKSPACE_LOW,
    ConfigError,
    FetchConfig,
    Zone,
    config_file,
)
from mstt.agent.core.demo import Demo
from mstt.agent.worlds.base import Episode, EpisodeRecorder, PathCheck, segment_samples

gym.register_envs(gymnasium_robotics)

SUCCESS_DISTANCE = 0.05
"""FetchReach's distance_threshold (metres)."""
WAYPOINT_RADIUS = 0.02
"""An intermediate waypoint counts as reached within this distance."""
DETOUR_LIFT = (0.05, 0.15)
"""Range of extra height (metres) of an 'over' detour above the higher of start and goal."""
DETOUR_SIDE = (0.05, 0.15)
"""Range of the sideways offset (metres) of an 'around' detour from the straight line's middle."""
ZONE_CLEARANCE = 0.05
"""Height above a zone's top at which the scripted demo passes over it."""
DEMO_GOAL_DISTANCE = WAYPOINT_RADIUS
"""The scripted demo ends this close to the goal, not at the env's 5 cm success radius: a demo cut off at success
ended 3.6 cm above the goal, so its mask held no token of the final approach and agents hovered above the goal."""
DEMO_HOLD_STEPS = 8
"""Steps the scripted demo then stays at the goal: FetchReach runs on after success, and near the goal (4.9 cm from
the zone's face) an agent without permitted tokens for staying put fell back to arbitrary candidates and drifted."""
ACTION_DIM = 4
FETCH_DT = 0.04
"""FetchReach's control period: timestep 0.002 s x n_substeps 20 (checked in the tests)."""
FETCH_FOVY = 45.0
"""Vertical field of view (degrees) of the Fetch model's free camera (vis.global_.fovy)."""
ACTION_STEP = 0.033
"""Metres the gripper moves in one control step per unit of action, on every axis: FetchReach scales an action by
0.05 into its mocap target and the arm covers about two thirds of that within the step, with no carry-over into the
next one (checked in the tests). The plan tracker inverts it."""


FOLLOW_LOOKAHEAD = ACTION_STEP
"""A path follower on the table aims one full-speed step ahead along the path."""
DEMO_SCALE = 0.05
"""Fetch's unit of a route (metres): about the distance the gripper covers in two steps at full speed."""
SEGMENT_RESOLUTION_FETCH = 0.002
"""Samples along a Fetch demo segment (metres): the clip tolerance is a centimetre."""


def validate_fetch_config(config: FetchConfig) -> None:
    """Field checks are in FetchConfig; nothing task-specific beyond them yet."""


def in_zones(position: np.ndarray, zones: Sequence[Zone]) -> bool:
    return any(bool(zone.contains(position)) for zone in zones)


START_SETTLE_STEPS = 6
"""Arm steps, taken inside reset after those at full speed, that bring the gripper to rest at its start (it is
within a millimetre after two or three and at rest after four or five, measured from 2 to 14 cm away)."""
START_DRAWS = 100
"""Draws of a start outside every zone before a variant's start box counts as lying inside one."""


class ForbiddenZones(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Pins the goal (when the variant fixes one), carries the gripper to the variant's start (when it names one or
    jitters it) and reports zone entries.

    info gains: in_zone (this step), cost (1.0 inside a zone), failed (entered a zone at any
    point of this episode), episode_cost (steps inside so far).
    """

    def __init__(
        self,
        env: gym.Env,
        zones: Sequence[Zone | dict[str, Any]],
        goal: Sequence[float] | None,
        start: Sequence[float] | None = None,
        start_jitter: float = 0.0,
    ) -> None:
        self.zones = [Zone.model_validate(z) for z in zones]
        # Recorded as plain data so the wrapped env can be re-created from its spec.
        gym.utils.RecordConstructorArgs.__init__(
            self,
            zones=[z.model_dump() for z in self.zones],
            goal=None if goal is None else list(goal),
            start=None if start is None else list(start),
            start_jitter=start_jitter,
        )
        gym.Wrapper.__init__(self, env)
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self.start = None if start is None else np.asarray(start, dtype=np.float64)
        self.start_jitter = start_jitter
        self._failed, self._cost = False, 0.0

    def _zone_info(self, info: dict[str, Any], grip_pos: np.ndarray) -> dict[str, Any]:
        inside = in_zones(grip_pos, self.zones)
        self._failed |= inside
        self._cost += float(inside)
        info.update(in_zone=inside, cost=float(inside), failed=self._failed, episode_cost=self._cost)
        return info

    def _move_to_start(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Carry the gripper from the home pose to the start, or to a point drawn uniformly in the box of half-width
        ``start_jitter`` around it outside every zone, with the arm's own steps on the unwrapped env: the episode's
        step count and zone record do not see them."""
        sim = self.env.unwrapped
        centre = obs["achieved_goal"].copy() if self.start is None else self.start
        for _ in range(START_DRAWS):
            start = centre + sim.np_random.uniform(-self.start_jitter, self.start_jitter, size=3)
            if not in_zones(start, self.zones):
                break
        else:
            raise ValueError(f"start_jitter {self.start_jitter}: no start outside the zones in {START_DRAWS} draws")
        full_speed = int(np.ceil(np.abs(start - obs["achieved_goal"]).max() / ACTION_STEP))
        for _ in range(full_speed + START_SETTLE_STEPS):
            action = np.zeros(sim.action_space.shape)
            action[:3] = np.clip((start - obs["achieved_goal"]) / ACTION_STEP, -1.0, 1.0)
            obs, *_ = sim.step(action)
        return obs

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.start is not None or self.start_jitter:
            obs = self._move_to_start(obs)
        if self.goal is not None:
            sim = self.env.unwrapped
            sim.goal = self.goal.copy()
            obs = sim._get_obs()  # desired_goal is read from sim.goal
        self._failed, self._cost = False, 0.0
        return obs, self._zone_info(info, obs["achieved_goal"])

    def step(self, action: np.ndarray) -> tuple[Any, ...]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._zone_info(info, obs["achieved_goal"])


class ReachExpert:
    """P-controller through a list of waypoints; the last one is the goal."""

    def __init__(self, gain: float) -> None:
        self.gain = gain
        self.waypoints: list[np.ndarray] = []

    def set_waypoints(self, waypoints: list[np.ndarray]) -> None:
        self.waypoints = [np.asarray(w, dtype=np.float64) for w in waypoints]

    def act(self, grip_pos: np.ndarray) -> np.ndarray:
        while (
            len(self.waypoints) > 1
            and np.linalg.norm(self.waypoints[0] - grip_pos) < WAYPOINT_RADIUS
        ):
            self.waypoints.pop(0)
        action = np.zeros(ACTION_DIM)
        action[:3] = np.clip(self.gain * (self.waypoints[0] - grip_pos), -1.0, 1.0)
        return action


def detour_waypoints(
    start: np.ndarray, goal: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """A random detour from start to goal, over or around a box standing on the straight line."""
    if rng.uniform() < 0.5:
        top = max(start[2], goal[2]) + rng.uniform(*DETOUR_LIFT)
        return [np.r_[start[:2], top], np.r_[goal[:2], top], goal]
    direction = goal[:2] - start[:2]
    normal = np.array([-direction[1], direction[0]]) / (np.linalg.norm(direction) + 1e-9)
    side = rng.choice([-1.0, 1.0]) * rng.uniform(*DETOUR_SIDE)
    middle = (start + goal) / 2
    return [np.r_[middle[:2] + side * normal, middle[2]], goal]


class FetchTask:
    """A FetchReach-v4 variant with forbidden zones."""

    pos_dim = 3
    source_data_fields = ("env_id", "goal", "episode_steps")  # zones only report, they do not change the data

    def __init__(self, config: FetchConfig) -> None:
        self.config = config

    @property
    def dataset_id(self) -> str:
        return self.config.dataset.dataset_id or f"mstt/fetch-{self.config.name}-v0"

    @cached_property
    def camera(self) -> FreeCamera:
        """The fixed view FetchReach renders with (gymnasium-robotics' default camera of the Fetch
        envs), as a calibrated pinhole camera."""
        return FreeCamera(
            lookat=tuple(float(v) for v in DEFAULT_CAMERA_CONFIG["lookat"]),
            distance=float(DEFAULT_CAMERA_CONFIG["distance"]),
            azimuth=float(DEFAULT_CAMERA_CONFIG["azimuth"]),
            elevation=float(DEFAULT_CAMERA_CONFIG["elevation"]),
            fovy=FETCH_FOVY,
            width=self.config.render.width,
            height=self.config.render.height,
        )

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        env = gym.make(
            self.config.env_id,
            max_episode_steps=self.config.episode_steps,
            render_mode=render_mode,
            width=self.config.render.width,
            height=self.config.render.height,
        )
        return ForbiddenZones(env, self.config.zones, self.config.goal, self.config.start, self.config.start_jitter)

    def reset_options(self) -> dict[str, Any] | None:
        return None  # the start is FetchReach's home pose, or one drawn near it; the wrapper places both

    def render_frame(self, env: gym.Env) -> np.ndarray:
        return np.asarray(env.render())

    def set_goal(self, env: gym.Env, position: np.ndarray) -> None:
        env.unwrapped.goal = np.asarray(position, dtype=np.float64)[:3].copy()

    def observation(self, env: gym.Env) -> dict[str, np.ndarray]:
        return env.unwrapped._get_obs()

    def positions(self, observations: np.ndarray) -> np.ndarray:
        return observations[..., :3]

    success_key = "is_success"

    @property
    def control_dt(self) -> float:
        return FETCH_DT

    def violation(self, positions: np.ndarray) -> np.ndarray:
        inside = np.zeros(positions.shape[:-1], dtype=bool)
        for zone in self.config.zones:
            inside |= zone.contains(positions)
        return inside

    def outside(self, positions: np.ndarray) -> np.ndarray:
        """Off the gripper's reachable workspace above the table."""
        positions = np.asarray(positions, dtype=float)
        return ~np.all((positions >= FETCH_WORKSPACE_LOW) & (positions <= FETCH_WORKSPACE_HIGH), axis=-1)

    follow_lookahead = FOLLOW_LOOKAHEAD
    demo_scale = DEMO_SCALE

    def check_path(self, points: np.ndarray, breaks: list[int]) -> PathCheck:
        """Refuse a segment that enters a zone deeper than ``demo_clip_depth`` (the distance to the zone's nearest
        face); accept a shallower graze with a warning."""
        points = np.asarray(points, dtype=float)
        limit = self.config.demo_clip_depth
        warnings: list[str] = []
        for i in range(1, len(points)):
            if i in breaks:
                continue
            samples = segment_samples(points[i - 1], points[i], SEGMENT_RESOLUTION_FETCH)
            where = f"segment {i - 1}->{i} from {points[i - 1].round(3).tolist()} to {points[i].round(3).tolist()}"
            for z, zone in enumerate(self.config.zones):
                depth = float(zone.depth(samples).max())
                if depth < 0:
                    continue
                if depth > limit:
                    return PathCheck(
                        refusal=f"{where} passes {100 * depth:.1f} cm deep through zone {z} "
                        f"{list(zone.low)}..{list(zone.high)} (demo_clip_depth {limit} m)"
                    )
                warnings.append(f"{where} grazes zone {z} by {100 * depth:.1f} cm")
        return PathCheck(warnings=tuple(warnings))

    def track(self, obs: np.ndarray, next_state: np.ndarray, plan_action: np.ndarray) -> np.ndarray:
        """One step to the plan's next gripper position (the arm has no lag to feed forward, so the inverse of
        ACTION_STEP puts it there within a few mm); the gripper fingers take the plan's own action.

        The earlier tracker, the plan's action plus 5x the position error, corrected only ~16% of the error per step:
        the gripper strayed centimetres off plans that cleared the zone and clipped its face in 2-4% of the episodes
        (BENCHMARKS.md)."""
        action = plan_action.copy()
        action[:, :3] = (next_state[:, :3] - obs[:, :3]) / ACTION_STEP
        return np.clip(action, -1.0, 1.0)

    def source_episodes(self, transitions: int, seed: int) -> Iterator[Episode]:
        """Episodes to the env's random goals; a share of them detour over or around a box."""
        data = self.config.dataset
        rng = np.random.default_rng(seed)
        env = self.make_env()
        expert = ReachExpert(data.gain)
        try:
            done, episode_index = 0, 0
            while done < transitions:
                obs, _ = env.reset(seed=seed + episode_index)
                episode_index += 1
                start, goal = obs["achieved_goal"], obs["desired_goal"]
                detour = rng.uniform() < data.detour_prob
                expert.set_waypoints(detour_waypoints(start, goal, rng) if detour else [goal])
                steps = min(self.config.episode_steps, transitions - done)
                episode = EpisodeRecorder(steps, obs, act_dim=ACTION_DIM)
                noise = rng.normal(0.0, data.action_noise, size=(steps, ACTION_DIM))
                reached = False
                for t in range(steps):
                    action = np.clip(expert.act(obs["achieved_goal"]) + noise[t], -1.0, 1.0)
                    obs, reward, terminated, _, info = env.step(action)
                    episode.record(t, obs, action, reward, terminated)
                    reached |= bool(info["is_success"])
                episode.goals_reached = int(reached)
                done += steps
                yield episode.finish()
        finally:
            env.close()

    def scripted_demo(self, seed: int = 0) -> Demo:
        """Noise-free expert to the fixed goal, passing over every zone on the straight line."""
        if self.config.goal is None:
            raise ValueError(f"variant '{self.config.variant}' has no fixed goal to demo")
        env = self.make_env()
        try:
            obs, _ = env.reset(seed=seed)
            start, goal = obs["achieved_goal"], obs["desired_goal"]
            line = start[None] + np.linspace(0, 1, 50)[:, None] * (goal - start)[None]
            crossed = [z for z in self.config.zones if any(in_zones(p, [z]) for p in line)]
            expert = ReachExpert(self.config.dataset.gain)
            if crossed:
                top = max(z.high[2] for z in crossed) + ZONE_CLEARANCE
                expert.set_waypoints([np.r_[start[:2], top], np.r_[goal[:2], top], goal])
            else:
                expert.set_waypoints([goal])
            points = [start.tolist()]
            for _ in range(self.config.episode_steps):
                obs, _, _, _, info = env.step(expert.act(obs["achieved_goal"]))
                points.append(obs["achieved_goal"].tolist())
                if info["failed"]:
                    raise ConfigError(
                        f"{config_file(self.config)}: field 'zones' = {[z.model_dump() for z in self.config.zones]}: "
                        f"the scripted demo of '{self.config.variant}' entered a zone on its way over them; give the "
                        "variant a demo file (demos: in the experiment config) instead"
                    )
                if np.linalg.norm(obs["achieved_goal"] - goal) < DEMO_GOAL_DISTANCE:
                    for _ in range(DEMO_HOLD_STEPS):  # the demonstrator stays at the goal, as an agent must
                        obs, _, _, _, info = env.step(expert.act(obs["achieved_goal"]))
                        points.append(obs["achieved_goal"].tolist())
                    break
            else:
                raise ConfigError(
                    f"{config_file(self.config)}: field 'episode_steps' = {self.config.episode_steps}: the scripted "
                    f"demo of '{self.config.variant}' did not reach the goal within that many steps; raise it"
                )
        finally:
            env.close()
        return Demo(
            task="fetch",
            name=self.config.name,
            variant=self.config.variant,
            source="scripted",
            points=points,
            timestamps=[i * self.control_dt for i in range(len(points))],
        )
