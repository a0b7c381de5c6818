"""Maze2D on gymnasium-robotics' PointMaze: layouts from YAML art, a D4RL-style scripted expert,
the top-down camera with its exact calibration, and source data from a never-reset stream.

Structural variants are the same map with some free cells turned into walls ('blocked').
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import gymnasium as gym
import gymnasium_robotics
import numpy as np

from mstt.agent.core.camera import FreeCamera
from mstt.agent.core.config import ConfigError, MazeConfig, config_file
from mstt.agent.core.demo import Demo
from mstt.agent.core.maze_layout import AGENT_Z, WALL_HEIGHT, Cell, MazeLayout
from mstt.agent.worlds.base import Episode, EpisodeRecorder, PathCheck, segment_samples

gym.register_envs(gymnasium_robotics)

GOAL_RADIUS = 0.45
"""PointMaze's success radius (distance between achieved and desired goal)."""
P_GAIN, D_GAIN = 10.0, -1.0
"""D4RL's waypoint controller: a = clip(P_GAIN * (waypoint - pos) + D_GAIN * vel, -1, 1)."""
POINT_DT = 0.01
"""PointEnv's control period: point.xml's timestep 0.01 s with frame_skip 1 (checked in the tests)."""
AGENT_RADIUS = 0.1
"""Radius of the point agent's collision sphere (point.xml)."""
CONTACT_SLACK = 0.05
"""Extra distance within which the agent counts as touching a blocked cell's wall box."""
GOAL_CAPTURE = 2 * GOAL_RADIUS
"""Within this distance of the goal a plan's tracker brakes onto the goal itself (MazeTask.track_plan). PointMaze
draws each goal up to 0.25 units off its cell's centre, so a plan along the corridor's middle can pass the goal just
outside GOAL_RADIUS. A straight line of two radii cannot cross a wall cell (one unit wide), only graze a corner."""
FOLLOW_LOOKAHEAD = 0.5
"""A path follower in the maze aims half a cell ahead along the path: closer targets slow the PD law down, farther
ones cut corners into walls."""
CAMERA_MARGIN = 0.5
"""World units of floor shown around the maze in the top-down frame."""
ENV_ID = "PointMaze_UMaze-v3"
"""Any PointMaze id works: the map always comes from the config through maze_map."""



def validate_maze_config(config: MazeConfig) -> None:
    """Refuse a maze no task could run: bad art, markers in walls, no route from start to goal."""
    layout = MazeLayout(config)
    if (layout.start is None) != (layout.goal is None):
        raise ValueError("give both a start and a goal ('S'/'G' or fields start/goal), or neither")
    if layout.start is not None and layout.goal is not None:
        if layout.distances_to(layout.goal)[layout.start] < 0:
            raise ValueError(
                f"field 'blocked' = {[list(c) for c in layout.blocked]}: no route from start "
                f"{list(layout.start)} to goal {list(layout.goal)} in this {config.role} maze"
            )


class WaypointExpert:
    """D4RL's maze2d controller: BFS over cells, then a PD law towards jittered cell centres."""

    def __init__(
        self, layout: MazeLayout, rng: np.random.Generator, jitter: float, radius: float
    ) -> None:
        self.layout, self.rng, self.jitter, self.radius_sq = layout, rng, jitter, radius * radius
        self._waypoints: list[tuple[float, float]] = []
        self._index = 0

    def set_goal(self, position: np.ndarray, goal_xy: np.ndarray) -> None:
        cells = self.layout.shortest_path(
            self.layout.xy_to_cell(position), self.layout.xy_to_cell(goal_xy)
        )
        waypoints = []
        for cell in cells[1:-1]:
            centre = self.layout.cell_to_xy(cell) - self.rng.uniform(0.0, self.jitter, size=2)
            waypoints.append((float(centre[0]), float(centre[1])))
        waypoints.append((float(goal_xy[0]), float(goal_xy[1])))
        self._waypoints, self._index = waypoints, 0

    def act(self, x: float, y: float, vx: float, vy: float) -> tuple[float, float]:
        """PD action towards the current waypoint (plain floats: this runs a million times)."""
        wx, wy = self._waypoints[self._index]
        dx, dy = wx - x, wy - y
        if dx * dx + dy * dy <= self.radius_sq and self._index < len(self._waypoints) - 1:
            self._index += 1
            wx, wy = self._waypoints[self._index]
            dx, dy = wx - x, wy - y
        ax = min(1.0, max(-1.0, P_GAIN * dx + D_GAIN * vx))
        ay = min(1.0, max(-1.0, P_GAIN * dy + D_GAIN * vy))
        return ax, ay


class MazeTask:
    """A maze variant on PointMaze-v3."""

    pos_dim = 2
    source_data_fields = ("rows", "builtin", "blocked")  # starts and goals of the data stream are random

    def __init__(self, config: MazeConfig) -> None:
        self.config = config
        self.layout = MazeLayout(config)

    @property
    def dataset_id(self) -> str:
        return self.config.dataset.dataset_id or f"mstt/maze-{self.config.name}-v0"

    def make_env(self, render_mode: str | None = None, continuing_goals: bool = False) -> gym.Env:
        """PointMaze with this variant's walls.

        The task is continuing (D4RL's maze2d never terminates at the goal; return counts the
        steps spent there). `continuing_goals` draws a new random goal whenever one is reached,
        as in data collection.
        """
        env = gym.make(
            ENV_ID,
            maze_map=self.layout.maze_map(),
            continuing_task=True,
            reset_target=continuing_goals,
            max_episode_steps=self.config.episode_steps,
            render_mode=render_mode,
            width=self.config.render.width,
            height=self.config.render.height,
        )
        if render_mode is not None:
            env.unwrapped.point_env.mujoco_renderer.default_cam_config = (
                self.camera.as_renderer_config()
            )
        return env

    def reset_options(self) -> dict[str, Any] | None:
        if self.layout.start is None:
            return None
        return {"reset_cell": np.array(self.layout.start), "goal_cell": np.array(self.layout.goal)}

    @cached_property
    def camera(self) -> FreeCamera:
        """Top-down camera framing the whole maze; image up = world +y, image right = world +x."""
        fovy = 45.0  # MuJoCo's default vis.global_.fovy, which point.xml keeps
        half_extent = max(self.layout.n_rows, self.layout.n_cols) / 2 + CAMERA_MARGIN
        distance = half_extent / math.tan(math.radians(fovy) / 2) + WALL_HEIGHT
        return FreeCamera(
            lookat=(0.0, 0.0, 0.0),
            distance=distance,
            azimuth=90.0,
            elevation=-90.0,
            fovy=fovy,
            width=self.config.render.width,
            height=self.config.render.height,
        )

    def world_to_pixel(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) agent positions -> (N, 2) pixel coordinates in the top-down frame."""
        xy = np.atleast_2d(xy)
        return self.camera.world_to_pixel(np.column_stack([xy, np.full(len(xy), AGENT_Z)]))

    def pixel_to_world(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates -> (N, 2) agent positions on the agent's plane."""
        return self.camera.pixel_to_world(uv, plane_z=AGENT_Z)[:, :2]

    def render_frame(self, env: gym.Env) -> np.ndarray:
        return np.asarray(env.render())

    def set_goal(self, env: gym.Env, position: np.ndarray) -> None:
        """Move the env's goal (and its red marker) to a world position, e.g. one read from words."""
        sim = env.unwrapped
        sim.goal = np.asarray(position, dtype=np.float64)[:2].copy()
        sim.update_target_site_pos()

    def observation(self, env: gym.Env) -> dict[str, np.ndarray]:
        """The env's current observation dict without stepping it."""
        sim = env.unwrapped
        return sim._get_obs(sim.point_env._get_obs()[0])

    def positions(self, observations: np.ndarray) -> np.ndarray:
        return observations[..., :2]

    success_key = "success"

    @property
    def control_dt(self) -> float:
        return POINT_DT

    @cached_property
    def _blocked_xy(self) -> np.ndarray:
        return np.array([self.layout.cell_to_xy(c) for c in self.layout.blocked]).reshape(-1, 2)

    def violation(self, positions: np.ndarray) -> np.ndarray:
        """Touching a blocked cell's wall box (Chebyshev distance to its centre)."""
        if len(self._blocked_xy) == 0:
            return np.zeros(positions.shape[:-1], dtype=bool)
        gap = np.abs(positions[..., None, :] - self._blocked_xy).max(axis=-1)
        return (gap <= 0.5 + AGENT_RADIUS + CONTACT_SLACK).any(axis=-1)

    def outside(self, positions: np.ndarray) -> np.ndarray:
        """Off the map or inside a wall cell of this variant (its blocked cells included)."""
        layout = self.layout
        cells = [layout.xy_to_cell(xy) for xy in np.asarray(positions, dtype=float).reshape(-1, 2)]
        blocked = [not layout.in_bounds(cell) or bool(layout.walls[cell]) for cell in cells]
        return np.array(blocked, dtype=bool).reshape(np.shape(positions)[:-1])

    @cached_property
    def _route_cells(self) -> np.ndarray:
        """(rows, cols) bool: the cells of the variant's shortest start -> goal route."""
        on_route = np.zeros(self.layout.walls.shape, dtype=bool)
        if self.layout.start is not None and self.layout.goal is not None:
            for cell in self.layout.shortest_path(self.layout.start, self.layout.goal):
                on_route[cell] = True
        return on_route

    def off_route(self, positions: np.ndarray) -> np.ndarray:
        """(..., 2) positions -> (...) bool: outside the cells of the shortest start -> goal route, where a
        perfect demo of this variant never goes (the oracle mask keeps only skills that stay on the route)."""
        rows = np.floor(self.layout.n_rows / 2 - positions[..., 1]).astype(int).clip(0, self.layout.n_rows - 1)
        cols = np.floor(positions[..., 0] + self.layout.n_cols / 2).astype(int).clip(0, self.layout.n_cols - 1)
        return ~self._route_cells[rows, cols]

    follow_lookahead = FOLLOW_LOOKAHEAD
    demo_scale = 1.0  # one cell

    def check_path(self, points: np.ndarray, breaks: list[int]) -> PathCheck:
        """Refuse a segment that leaves the map, passes through a blocked cell or a wall deeper than
        ``demo_clip_depth``, or crosses a wall between free cells that are not next to each other in the maze (two
        cells whose shortest route is longer than their row + column distance: another corridor). Shallower cuts
        through wall corners between neighbouring free cells are accepted with a warning."""
        layout, limit = self.layout, self.config.demo_clip_depth
        points = np.asarray(points, dtype=float)
        warnings: list[str] = []
        for i in range(1, len(points)):
            if i in breaks:
                continue
            samples = segment_samples(points[i - 1], points[i])
            cells = [layout.xy_to_cell(p) for p in samples]
            where = f"segment {i - 1}->{i} from {points[i - 1].round(2).tolist()} to {points[i].round(2).tolist()}"
            off = [c for c in cells if not layout.in_bounds(c)]
            if off:
                return PathCheck(refusal=f"{where} leaves the map at cell {list(off[0])}")
            inside = [(c, self._wall_depth(p, c)) for p, c in zip(samples, cells) if layout.walls[c]]
            blocked = [(c, d) for c, d in inside if c in layout.blocked and d > limit]
            if blocked:
                cell, depth = max(blocked, key=lambda item: item[1])
                return PathCheck(
                    refusal=(
                        f"{where} passes {depth:.2f} deep through blocked cell {list(cell)} (demo_clip_depth {limit})"
                    )
                )
            free = [c for c in cells if not layout.walls[c]]
            visited = [c for k, c in enumerate(free) if k == 0 or c != free[k - 1]]
            for a, b in zip(visited[:-1], visited[1:]):
                steps = int(layout.distances_to(b)[a])
                if steps < 0 or steps > abs(a[0] - b[0]) + abs(a[1] - b[1]):
                    return PathCheck(
                        refusal=f"{where} crosses a wall from cell {list(a)} into cell {list(b)}, "
                        f"{'unreachable' if steps < 0 else f'{steps} cells away'} along the maze"
                    )
            if not inside:
                continue
            cell, depth = max(inside, key=lambda item: item[1])
            kind = "blocked cell" if cell in layout.blocked else "wall cell"
            if depth > limit:
                return PathCheck(
                    refusal=f"{where} passes {depth:.2f} deep through {kind} {list(cell)} (demo_clip_depth {limit})"
                )
            warnings.append(f"{where} clips {kind} {list(cell)} by {depth:.2f}")
        return PathCheck(warnings=tuple(warnings))

    def _wall_depth(self, xy: np.ndarray, cell: Cell) -> float:
        """Distance from a point inside wall cell ``cell`` to the nearest free cell (0.5 or more: no free neighbour)."""
        layout, best = self.layout, 0.5
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                other = (cell[0] + dr, cell[1] + dc)
                if (dr, dc) == (0, 0) or not layout.in_bounds(other) or layout.walls[other]:
                    continue
                centre = layout.cell_to_xy(other)
                gap = np.maximum(np.abs(xy - centre) - 0.5, 0.0)
                best = min(best, float(np.linalg.norm(gap)))
        return best

    def track(self, obs: np.ndarray, next_state: np.ndarray, plan_action: np.ndarray) -> np.ndarray:
        """PD towards the plan's next position with its velocity fed forward. The plain PD law lags
        the plan by ~0.45 units and, replanning from the lagging state, halves the agent's speed."""
        pos, vel = obs[:, :2], obs[:, 2:4]
        action = P_GAIN * (next_state[:, :2] - pos) + (next_state[:, 2:4] - vel)
        return np.clip(action, -1.0, 1.0)

    def track_plan(self, obs: np.ndarray, plan: np.ndarray, k: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(E, 4) observations, (E, H, 4) planned states, (E,) plan steps executed and (E, 2) goals -> (E, 2) actions:
        ``track`` towards the plan's state k + 1, except within GOAL_CAPTURE of the goal, where it tracks a state at
        rest on the goal itself. Skills end where the data's windows end, not on a goal drawn off the corridor's
        middle: a plan that passes it just outside GOAL_RADIUS carries the body past it, and the next plans follow the
        demo on (results/demo-follow/goal-capture/COMMAND.md)."""
        rows = np.arange(len(obs))
        goal = np.asarray(goal, dtype=float)[:, :2]
        near = np.linalg.norm(goal - obs[:, :2], axis=1) <= GOAL_CAPTURE
        at_rest_on_goal = np.concatenate([goal, np.zeros_like(goal)], axis=1)
        target = np.where(near[:, None], at_rest_on_goal, plan[rows, k + 1])
        return self.track(obs, target, np.zeros((len(obs), 2)))

    def source_episodes(self, transitions: int, seed: int) -> Iterator[Episode]:
        """The D4RL maze2d recipe: one never-reset stream, a new random goal each time one is
        reached, N(0, sigma^2) noise on every action, cut into fixed-length episodes."""
        data = self.config.dataset
        rng = np.random.default_rng(seed)
        env = self.make_env(continuing_goals=True)
        try:
            sim = env.unwrapped  # skip the checker/limit wrappers: collection is a hot loop
            obs, _ = env.reset(seed=seed)
            expert = WaypointExpert(self.layout, rng, data.waypoint_jitter, data.waypoint_radius)
            goal = sim.goal
            expert.set_goal(obs["achieved_goal"], goal)
            done = 0
            while done < transitions:
                steps = min(data.episode_steps, transitions - done)
                episode = EpisodeRecorder(steps, obs, act_dim=2)
                noise = rng.normal(0.0, data.action_noise, size=(steps, 2)).tolist()
                for t in range(steps):
                    # Plain floats and an identity check on the goal: numpy scalars and
                    # array_equal would double the per-step overhead of this loop.
                    x, y, vx, vy = obs["observation"].tolist()
                    ax, ay = expert.act(x, y, vx, vy)
                    nx, ny = noise[t]
                    action = np.array(
                        (min(1.0, max(-1.0, ax + nx)), min(1.0, max(-1.0, ay + ny)))
                    )
                    obs, reward, terminated, _, _ = sim.step(action)
                    episode.record(t, obs, action, reward, terminated)
                    if sim.goal is not goal:
                        # The env drew a new goal because the old one was reached.
                        goal = sim.goal
                        expert.set_goal(obs["achieved_goal"], goal)
                        episode.goals_reached += 1
                done += steps
                yield episode.finish()
        finally:
            env.close()

    def scripted_demo(self, seed: int = 0) -> Demo:
        """Noise-free expert from the fixed start to the fixed goal: the positions it visits."""
        if self.layout.start is None or self.layout.goal is None:
            raise ValueError(f"variant '{self.config.variant}' has no fixed start and goal to demo")
        env = self.make_env()
        try:
            obs, _ = env.reset(seed=seed, options=self.reset_options())
            expert = WaypointExpert(
                self.layout, np.random.default_rng(seed), 0.0, self.config.dataset.waypoint_radius
            )
            expert.set_goal(obs["achieved_goal"], obs["desired_goal"])
            points = [obs["achieved_goal"].tolist()]
            for _ in range(self.config.episode_steps):
                obs, _, _, _, info = env.step(np.array(expert.act(*obs["observation"])))
                points.append(obs["achieved_goal"].tolist())
                if info["success"]:
                    break
            else:
                raise ConfigError(
                    f"{config_file(self.config)}: field 'episode_steps' = {self.config.episode_steps}: the scripted "
                    f"expert did not reach the goal of '{self.config.variant}' within that many steps; raise it"
                )
        finally:
            env.close()
        return Demo(
            task="maze",
            name=self.config.name,
            variant=self.config.variant,
            source="scripted",
            points=points,
            timestamps=[i * self.control_dt for i in range(len(points))],
        )
