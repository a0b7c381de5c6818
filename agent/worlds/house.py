"""A house on Farama's MiniWorld, the runnable stand-in for Habitat ReplicaCAD: rooms, doorways, furniture and
coloured objects from YAML, discrete turn/forward actions, egocentric RGB and a calibrated top-down map.

The env's observation is the agent's pose (x, z, cos, sin of its heading) and goal positions, so skills work on
positions as in the maze; frames come from render() (egocentric) and render_map() (top-down), never from step(),
which keeps data collection free of OpenGL. Structural variants close doorways, move furniture or add zones.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyglet

pyglet.options["headless"] = True  # MiniWorld then renders through EGL with no display; this must precede its import

import miniworld  # noqa: E402
from miniworld.entity import Ball, Box, Entity, Key  # noqa: E402
from miniworld.math import intersect_circle_segs  # noqa: E402
from miniworld.miniworld import MiniWorldEnv  # noqa: E402
from miniworld.params import DEFAULT_PARAMS  # noqa: E402
from pyglet.gl import GL_QUADS, GL_TEXTURE_2D, glBegin, glColor3f, glDisable, glEnd, glNormal3f, glVertex3f  # noqa: E402

from mstt.agent.core.camera import TopDownMap  # noqa: E402
from mstt.agent.core.config import ConfigError, HouseConfig, config_file  # noqa: E402
from mstt.agent.core.demo import Demo  # noqa: E402
from mstt.agent.core.house_layout import (  # noqa: E402
    AGENT_RADIUS,
    CLOSED_DOORWAY_RGB,
    WALL_RGB,
    HouseLayout,
    RoutePlanner,
    point_segment_distance,
    points_in_rects,
    segments_cross,
    segments_hit_rects,
    touch_rects,
)
from mstt.agent.worlds.base import COLLISION_KEY, Episode, EpisodeRecorder, PathCheck, segment_samples  # noqa: E402

ENV_ID = "MiniWorld-MsttHouse-v0"
"""The gymnasium id of the house env (registered below); a variant's house travels in its `house` keyword."""
TURN_LEFT, TURN_RIGHT, MOVE_FORWARD = (int(a) for a in (MiniWorldEnv.Actions.turn_left, MiniWorldEnv.Actions.turn_right,
                                                        MiniWorldEnv.Actions.move_forward))  # fmt: skip
N_ACTIONS = 3
"""MiniWorld's navigation actions: turn left, turn right, move forward."""
FORWARD_STEP = float(DEFAULT_PARAMS.sample(None, "forward_step"))
TURN_STEP = float(DEFAULT_PARAMS.sample(None, "turn_step"))
"""Metres of a forward step and degrees of a turn: MiniWorld's defaults (the house never randomises its domain)."""
GOAL_RADIUS = 0.5
"""Success radius (metres between the agent's centre and the goal), about the maze's 0.45 cell."""
STEP_SECONDS = 0.1
"""Seconds per env step: MiniWorld has no clock; a 0.15 m step at a 1.5 m/s walking pace."""
WAYPOINT_RADIUS = 0.3
"""An intermediate waypoint counts as reached within this distance (two forward steps)."""
ESCAPE_DISTANCE, ESCAPE_DIRECTIONS = 2 * WAYPOINT_RADIUS, 16
"""A blocked expert backs off to the point of most clearance among 16 directions, twice the waypoint radius away
(a nearer one would count as reached at once)."""
CONTACT_SLACK = 0.05
"""Extra distance within which the agent counts as touching a closed doorway."""
MAP_MARGIN = 1.0
"""Metres of background around the house in render_top_view (MiniWorld's own, hard-coded margin)."""
WALL_PIXELS = 3
"""Width (pixels) of a drawn wall: about 14 cm at the default 480-pixel map of a 19 m house."""
ZONE_COLOUR = (1.0, 0.55, 0.0)
"""Forbidden zones are drawn on the floor in orange (the sky, seen around the map, is light blue)."""
FLOOR_PATCH_Y = 0.01
"""Height (metres) of a zone's floor patch above the floor, so it is drawn over it."""
OBJECT_SIZE = 0.4
"""Height (metres) of a goal ball or box."""
TRACK_TURNS = 6
"""The tracker's detour looks at the headings up to this many turn steps either side of the current one (90 degrees)."""
TRACK_SLACK = 0.01
"""Metres the tracker keeps to spare beyond the agent's radius when it judges whether a forward step is free."""
FOLLOW_LOOKAHEAD = 0.6
"""A path follower aims this far ahead along a path: four forward steps."""
PLAN_LOOKAHEAD = 1.5
"""HouseTask.track_plan aims at most this far ahead along a plan (metres, ten forward steps), about as far as a
16-step plan of the noisy data goes: measured on 10 episodes of the blocked house, 0.6 m reached the goal in 6 (296
steps), 1.0 m in 8 (203), 1.5 m in 10 (199)."""
DEMO_SCALE = 1.0
"""The house's unit of a route (metres): about a doorway's width."""
TEXTURES = Path(miniworld.__file__).parent / "textures"


def texture_names() -> list[str]:
    """The floor and wall textures MiniWorld ships (a name stands for its files name_1.png, name_2.png, ...)."""
    return sorted({path.stem.rsplit("_", 1)[0] for path in TEXTURES.glob("*_1.png")})


def validate_house_config(config: HouseConfig) -> None:
    """Refuse a house no task could run: bad geometry (HouseLayout), unknown textures, no route from start to goal."""
    layout = HouseLayout(config)
    known = texture_names()
    for i, room in enumerate(config.rooms):
        for field in ("floor", "wall"):
            if getattr(room, field) not in known:
                raise ValueError(
                    f"field 'rooms[{i}].{field}' = {getattr(room, field)!r}: not a MiniWorld texture; choose one of "
                    f"{known}"
                )
    if layout.start is not None and layout.goal is not None:
        if RoutePlanner(layout, avoid_zones=True).route(layout.start, layout.goal) is None:
            closed = [i for i, door in enumerate(config.doorways) if door.closed]
            raise ValueError(
                f"field 'doorways' (closed: {closed}): no route from start {layout.start.tolist()} to goal "
                f"{layout.goal.tolist()} keeps the agent ({2 * AGENT_RADIUS:g} m wide) clear of walls, furniture and "
                "zones"
            )


def map_camera(layout: HouseLayout, width: int, height: int) -> TopDownMap:
    """The calibration of the top-down map: MiniWorld's render_top_view frames the rooms with MAP_MARGIN metres
    around them, widened to the picture's aspect ratio."""
    return TopDownMap.framing(layout.extent, MAP_MARGIN, width, height)


def draw_segments(picture: np.ndarray, segments: np.ndarray, rgb: tuple[int, int, int], width: float) -> None:
    """Draw (S, 2, 2) segments given in pixel coordinates (u, v; pixel i spans [i, i + 1)) on an (H, W, 3) picture,
    in place: every pixel whose centre lies within ``width`` / 2 (per axis) of a point of a segment."""
    height_px, width_px = picture.shape[:2]
    half = width / 2
    offsets = np.arange(-math.ceil(half) - 1, math.ceil(half) + 2)
    for a, b in np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2):
        n = max(2, int(math.ceil(2 * np.abs(b - a).max())) + 1)  # samples half a pixel apart
        points = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
        cols = np.floor(points[:, :1]).astype(int) + offsets  # (n, K)
        rows = np.floor(points[:, 1:]).astype(int) + offsets
        col_ok = (np.abs(cols + 0.5 - points[:, :1]) <= half) & (cols >= 0) & (cols < width_px)
        row_ok = (np.abs(rows + 0.5 - points[:, 1:]) <= half) & (rows >= 0) & (rows < height_px)
        keep = row_ok[:, :, None] & col_ok[:, None, :]  # (n, K rows, K cols)
        rr = np.broadcast_to(rows[:, :, None], keep.shape)[keep]
        cc = np.broadcast_to(cols[:, None, :], keep.shape)[keep]
        picture[rr, cc] = rgb


def wrap_angle(angle: float) -> float:
    """An angle in radians, wrapped into [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


class FloorPatch(Entity):
    """A flat coloured rectangle on the floor (a forbidden zone); nothing collides with it."""

    def __init__(self, rect: np.ndarray, colour: tuple[float, float, float]) -> None:
        super().__init__()
        self.rect, self.colour = rect, colour

    @property
    def is_static(self) -> bool:
        return True

    def render(self) -> None:
        x0, z0, x1, z1 = self.rect
        glDisable(GL_TEXTURE_2D)
        glColor3f(*self.colour)
        glBegin(GL_QUADS)
        glNormal3f(0, 1, 0)
        for x, z in ((x1, z1), (x1, z0), (x0, z0), (x0, z1)):  # counter-clockwise seen from above, as room floors
            glVertex3f(x, FLOOR_PATCH_Y, z)
        glEnd()


class HouseEnv(MiniWorldEnv):
    """A MiniWorld house built from a HouseConfig (as a plain dict, so that the env's spec serialises).

    Observation: observation (x, z, cos h, sin h) with h the heading from +x towards +z (the agent moves by
    forward_step * (cos h, sin h)); achieved_goal (x, z); desired_goal (x, z). Actions: Discrete(3) turn left, turn
    right, move forward. The task is continuing, as the maze's: reward 1 within GOAL_RADIUS of the goal, info
    'success' then, never terminated. reset options: start (x, z), heading (radians), goal (x, z); each unset one is
    drawn at random on the free floor. step() renders nothing: render() gives the egocentric frame, render_map() the
    top-down map.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / STEP_SECONDS)}

    def __init__(self, house: dict[str, Any], render_mode: str | None = None) -> None:
        self.config = HouseConfig.model_validate(house)
        self.layout = HouseLayout(self.config)
        self._options: dict[str, Any] = {}
        self.goal = np.zeros(2)
        # MiniWorld prints "Falling back to num_samples=4" for every env whose GL driver lacks 8x multisampling (its
        # frame buffers ask for it, hard-coded); that line says nothing a user can act on, so it is kept off stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            super().__init__(
                max_episode_steps=self.config.episode_steps,
                obs_width=self.config.egocentric.width,
                obs_height=self.config.egocentric.height,
                window_width=self.config.render.width,
                window_height=self.config.render.height,
                render_mode=render_mode,
            )
        x0, z0, x1, z1 = self.layout.extent
        self.observation_space = gym.spaces.Dict(
            {
                "observation": gym.spaces.Box(
                    np.array([x0, z0, -1.0, -1.0]), np.array([x1, z1, 1.0, 1.0]), dtype=np.float64
                ),  # fmt: skip
                "achieved_goal": gym.spaces.Box(np.array([x0, z0]), np.array([x1, z1]), dtype=np.float64),
                "desired_goal": gym.spaces.Box(np.array([x0, z0]), np.array([x1, z1]), dtype=np.float64),
            }
        )
        self.action_space = gym.spaces.Discrete(N_ACTIONS)

    def _gen_world(self) -> None:
        layout = self.layout
        rooms = [self.add_rect_room(x0, x1, z0, z1, floor_tex=room.floor, wall_tex=room.wall)
                 for (x0, z0, x1, z1), room in zip(layout.rooms, self.config.rooms)]  # fmt: skip
        for opening in layout.openings:
            if opening.closed:
                continue
            extent = {"min_z": opening.low, "max_z": opening.high} if opening.axis == 0 else {
                "min_x": opening.low, "max_x": opening.high}  # fmt: skip
            for room, edge in zip(opening.rooms, opening.edges):
                rooms[room].add_portal(edge=edge, **extent)
        for box in self.config.boxes:
            self.place_entity(Box(box.colour, size=(box.size[0], box.height, box.size[1])),
                              pos=np.array([box.at[0], 0.0, box.at[1]]), dir=0.0)  # fmt: skip
        makers = {"ball": lambda c: Ball(c, size=OBJECT_SIZE), "key": Key, "box": lambda c: Box(c, size=OBJECT_SIZE)}
        for obj in self.config.objects:
            self.place_entity(makers[obj.kind](obj.colour), pos=np.array([obj.at[0], 0.0, obj.at[1]]), dir=0.0)
        for zone in layout.zones:
            self.place_entity(FloorPatch(zone, ZONE_COLOUR), pos=np.zeros(3), dir=0.0)
        options = self._options
        start = options.get("start")
        start = layout.sample_free(self.np_random) if start is None else np.asarray(start, dtype=np.float64)
        heading = options.get("heading")
        heading = self.np_random.uniform(-math.pi, math.pi) if heading is None else float(heading)
        goal = options.get("goal")
        self.goal = layout.sample_free(self.np_random) if goal is None else np.asarray(goal, dtype=np.float64).copy()
        self.place_agent(pos=np.array([start[0], 0.0, start[1]]), dir=-heading)

    def intersect(self, ent: Entity, pos: np.ndarray, radius: float) -> bool | None:
        """Walls and furniture block (furniture as its true box footprint, not MiniWorld's bounding circle); goal
        objects and zones do not."""
        x, z = float(pos[0]), float(pos[2])
        if intersect_circle_segs(np.array([x, 0.0, z]), radius, self.wall_segs):
            return True
        boxes = self.layout.boxes
        if len(boxes):
            dx = np.maximum(np.maximum(boxes[:, 0] - x, x - boxes[:, 2]), 0.0)
            dz = np.maximum(np.maximum(boxes[:, 1] - z, z - boxes[:, 3]), 0.0)
            if (dx * dx + dz * dz < radius * radius).any():
                return True
        return None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._options = dict(options or {})
        super().reset(seed=seed)
        obs = self.observation()
        return obs, {"success": self._success(obs)}

    def observation(self) -> dict[str, np.ndarray]:
        x, _, z = self.agent.pos
        heading = -self.agent.dir
        position = np.array([x, z], dtype=np.float64)
        return {
            "observation": np.array([x, z, math.cos(heading), math.sin(heading)], dtype=np.float64),
            "achieved_goal": position,
            "desired_goal": self.goal.copy(),
        }

    def _success(self, obs: dict[str, np.ndarray]) -> bool:
        gap = obs["achieved_goal"] - obs["desired_goal"]
        return bool(gap[0] * gap[0] + gap[1] * gap[1] <= GOAL_RADIUS * GOAL_RADIUS)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        self.step_count += 1
        action = int(action)
        stopped = False
        if action == MOVE_FORWARD:
            stopped = not self.move_agent(FORWARD_STEP, 0.0)
        elif action == TURN_LEFT:
            self.turn_agent(TURN_STEP)
        elif action == TURN_RIGHT:
            self.turn_agent(-TURN_STEP)
        else:
            raise ValueError(f"action {action} is not one of turn left (0), turn right (1), move forward (2)")
        obs = self.observation()
        success = self._success(obs)
        return obs, float(success), False, False, {"success": success, COLLISION_KEY: stopped}

    def render(self) -> np.ndarray | None:
        """The agent's egocentric RGB frame (egocentric.height, egocentric.width, 3) uint8."""
        if self.render_mode != "rgb_array":
            return None
        return np.asarray(self.render_obs())

    def render_map(self) -> np.ndarray:
        """The top-down map (render.height, render.width, 3) uint8, the agent drawn as a red triangle, the walls
        as WALL_RGB lines and the closed doorways as CLOSED_DOORWAY_RGB lines over the picture; its calibration is
        HouseTask.camera (map_camera)."""
        picture = np.array(self.render_top_view(self.vis_fb, render_agent=True), dtype=np.uint8)
        height, width = picture.shape[:2]
        camera = map_camera(self.layout, width, height)
        for segments, rgb in ((self.layout.walls, WALL_RGB), (self.layout.closed, CLOSED_DOORWAY_RGB)):
            pixels = camera.world_to_pixel(segments.reshape(-1, 2)).reshape(-1, 2, 2)
            draw_segments(picture, pixels, rgb, WALL_PIXELS)
        return picture


gym.register(ENV_ID, entry_point=f"{__name__}:HouseEnv")


def house_env(env: gym.Env) -> HouseEnv:
    """The MiniWorld house inside gymnasium's wrappers."""
    sim = env.unwrapped
    if not isinstance(sim, HouseEnv):
        raise TypeError(f"not a house env: {sim!r}")
    return sim


class HouseExpert:
    """Walks a route of waypoints with MiniWorld's discrete actions: turn towards the current waypoint until facing
    it within half a turn step, then step forward."""

    def __init__(self, planner: RoutePlanner, rng: np.random.Generator, jitter: float) -> None:
        self.planner, self.rng, self.jitter = planner, rng, jitter
        self.tolerance = math.radians(TURN_STEP) / 2 + 1e-6
        self.waypoints: list[tuple[float, float]] = []
        self.index = 0

    def set_goal(self, position: np.ndarray, goal: np.ndarray, blocked: bool = False) -> bool:
        """Plan to ``goal``; False when no route exists. ``blocked``: the agent just ran into a wall or box (its
        headings come in turn steps, so it cannot follow a line exactly past a jamb): back off first to the nearby
        point with the most clearance."""
        escape = self._escape(position) if blocked else None
        route = self.planner.route(position if escape is None else escape, goal)
        if route is None:
            return False
        if self.jitter > 0 and len(route) > 1:
            route = self._jittered([position, *route])
        if escape is not None:
            route = [escape, *route]
        self.waypoints = [(float(p[0]), float(p[1])) for p in route]
        self.index = 0
        return True

    def _escape(self, position: np.ndarray) -> np.ndarray | None:
        angles = np.linspace(0.0, 2 * math.pi, ESCAPE_DIRECTIONS, endpoint=False)
        candidates = position + ESCAPE_DISTANCE * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        layout = self.planner.layout
        clearance = np.where(layout.in_rooms(candidates), layout.clearance(candidates), -np.inf)
        best = int(clearance.argmax())
        return candidates[best] if clearance[best] > layout.clearance(position[None])[0] else None

    def _jittered(self, route: list[np.ndarray]) -> list[np.ndarray]:
        """Shift each intermediate waypoint by U(-jitter, jitter) per axis where both segments stay clear."""
        points = [np.asarray(p, dtype=np.float64) for p in route]
        for k in range(1, len(points) - 1):
            moved = points[k] + self.rng.uniform(-self.jitter, self.jitter, size=2)
            ends = np.stack([points[k - 1], points[k + 1]])
            if self.planner.clear(ends, np.stack([moved, moved])).all():
                points[k] = moved
        return points[1:]

    def act(self, x: float, z: float, cos_h: float, sin_h: float) -> int:
        wx, wz = self.waypoints[self.index]
        if (wx - x) ** 2 + (wz - z) ** 2 <= WAYPOINT_RADIUS**2 and self.index < len(self.waypoints) - 1:
            self.index += 1
            wx, wz = self.waypoints[self.index]
        error = wrap_angle(math.atan2(wz - z, wx - x) - math.atan2(sin_h, cos_h))
        if error > self.tolerance:
            return TURN_RIGHT  # MiniWorld's right turn lowers its dir, raising the heading towards +z
        if error < -self.tolerance:
            return TURN_LEFT
        return MOVE_FORWARD


class HouseTask:
    """A house variant on MiniWorld."""

    pos_dim = 2
    source_data_fields = ("rooms", "doorways", "boxes", "objects")  # starts and goals of the data stream are random
    success_key = "success"
    follow_lookahead = FOLLOW_LOOKAHEAD
    plan_lookahead = PLAN_LOOKAHEAD
    demo_scale = DEMO_SCALE

    def __init__(self, config: HouseConfig) -> None:
        self.config = config
        self.layout = HouseLayout(config)

    @property
    def dataset_id(self) -> str:
        return self.config.dataset.dataset_id or f"mstt/house-{self.config.name}-v0"

    @cached_property
    def planner(self) -> RoutePlanner:
        """Routes of this variant's scripted demo: around furniture, closed doorways and forbidden zones."""
        return RoutePlanner(self.layout, avoid_zones=True)

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        return gym.make(
            ENV_ID,
            house=self.config.model_dump(mode="json"),
            max_episode_steps=self.config.episode_steps,
            render_mode=render_mode,
        )

    def reset_options(self) -> dict[str, Any] | None:
        if self.layout.start is None or self.layout.goal is None:
            return None
        return {"start": self.layout.start.copy(), "heading": self.layout.heading, "goal": self.layout.goal.copy()}

    @cached_property
    def camera(self) -> TopDownMap:
        """The calibration of render_map() (map_camera)."""
        return map_camera(self.layout, self.config.render.width, self.config.render.height)

    def world_to_pixel(self, xz: np.ndarray) -> np.ndarray:
        """(N, 2) floor positions -> (N, 2) pixel coordinates in the top-down map."""
        return self.camera.world_to_pixel(xz)

    def pixel_to_world(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates of the top-down map -> (N, 2) floor positions."""
        return self.camera.pixel_to_world(uv)

    def render_frame(self, env: gym.Env) -> np.ndarray:
        """The top-down map: the picture a demo is drawn on, as the maze's top-down frame; walls and closed
        doorways drawn (HouseEnv.render_map)."""
        return house_env(env).render_map()

    def render_egocentric(self, env: gym.Env) -> np.ndarray:
        """What the agent sees: (egocentric.height, egocentric.width, 3) uint8."""
        return np.asarray(house_env(env).render_obs())

    def set_goal(self, env: gym.Env, position: np.ndarray) -> None:
        house_env(env).goal = np.asarray(position, dtype=np.float64)[:2].copy()

    def observation(self, env: gym.Env) -> dict[str, np.ndarray]:
        return house_env(env).observation()

    def positions(self, observations: np.ndarray) -> np.ndarray:
        return observations[..., :2]

    @property
    def control_dt(self) -> float:
        return STEP_SECONDS

    def violation(self, positions: np.ndarray) -> np.ndarray:
        """Inside a forbidden zone, or touching a closed doorway (the maze's blocked cell)."""
        positions = np.asarray(positions, dtype=np.float64)
        flat = positions.reshape(-1, 2)
        touching = self.layout.in_zones(flat)
        closed = self.layout.closed
        if len(closed):
            near = point_segment_distance(flat, closed[:, 0], closed[:, 1]).min(-1)
            touching |= near <= AGENT_RADIUS + CONTACT_SLACK
        return touching.reshape(positions.shape[:-1])

    def outside(self, positions: np.ndarray) -> np.ndarray:
        """Off every room's floor or inside a piece of furniture."""
        positions = np.asarray(positions, dtype=np.float64)
        flat = positions.reshape(-1, 2)
        return (~self.layout.in_rooms(flat) | self.layout.in_boxes(flat)).reshape(positions.shape[:-1])

    def check_path(self, points: np.ndarray, breaks: list[int]) -> PathCheck:
        """Refuse a segment that leaves the house, crosses a wall (a closed doorway is named as such), passes through
        furniture, or enters a forbidden zone deeper than ``demo_clip_depth``; accept a shallower graze of a zone, or
        a segment that passes closer to a wall or box than the agent's radius, with a warning."""
        layout, limit = self.layout, self.config.demo_clip_depth
        points = np.asarray(points, dtype=np.float64)
        warnings: list[str] = []
        for i in range(1, len(points)):
            if i in breaks:
                continue
            a, b = points[i - 1], points[i]
            where = f"segment {i - 1}->{i} from {a.round(2).tolist()} to {b.round(2).tolist()}"
            samples = segment_samples(a, b)
            off = ~layout.in_rooms(samples)
            if off.any():
                return PathCheck(refusal=f"{where} leaves the house at {samples[off][0].round(2).tolist()}")
            for opening in layout.openings:
                if opening.closed and segments_cross(a[None], b[None], *opening.segment[:, None])[0, 0]:
                    names = [layout.room_names[r] for r in opening.rooms]
                    return PathCheck(
                        refusal=f"{where} passes through closed doorway {opening.index} between {names[0]!r} and "
                        f"{names[1]!r} (field 'doorways[{opening.index}]')"
                    )
            crossed = np.flatnonzero(segments_cross(a[None], b[None], layout.walls[:, 0], layout.walls[:, 1])[0])
            if len(crossed):
                wall = layout.walls[crossed[0]]
                return PathCheck(refusal=f"{where} crosses the wall from {wall[0].tolist()} to {wall[1].tolist()}")
            hit = np.flatnonzero(segments_hit_rects(a[None], b[None], layout.boxes)[0])
            if len(hit):
                return PathCheck(refusal=f"{where} passes through {layout.box_name(int(hit[0]))}")
            for z, zone in enumerate(layout.zones):
                inside = points_in_rects(samples, zone[None])[:, 0]
                if not inside.any():
                    continue
                depth = float(np.minimum(samples[inside] - zone[:2], zone[2:] - samples[inside]).min(axis=1).max())
                name = self.config.zones[z].name
                if depth > limit:
                    return PathCheck(
                        refusal=f"{where} passes {depth:.2f} m deep through zone {name!r} (demo_clip_depth {limit} m)"
                    )
                warnings.append(f"{where} grazes zone {name!r} by {depth:.2f} m")
            closest = float(layout.clearance(samples).min())
            if closest < AGENT_RADIUS:
                warnings.append(f"{where} passes {closest:.2f} m from a wall or box (the agent's radius is "
                                f"{AGENT_RADIUS:g} m)")  # fmt: skip
        return PathCheck(warnings=tuple(warnings))

    def track(self, obs: np.ndarray, next_state: np.ndarray, plan_action: np.ndarray) -> np.ndarray:
        """(E, 4) poses and (E, 4) planned next poses -> (E,) int64 actions: turn towards the planned position (its
        planned heading once there) until facing it within half a turn step, then step forward. Where the forward
        step along the heading nearest the planned direction would run into a wall or a box (a path follower
        cutting a doorway's jamb, a plan that grazes furniture), it takes the free heading nearest that direction
        instead, and so slides past the obstacle rather than pushing into it (MiniWorld then does not move)."""
        turn = math.radians(TURN_STEP)
        gap = next_state[:, :2] - obs[:, :2]
        far = np.linalg.norm(gap, axis=-1) > self.follow_lookahead / 8
        target = np.where(far, np.arctan2(gap[:, 1], gap[:, 0]), np.arctan2(next_state[:, 3], next_state[:, 2]))
        heading = np.arctan2(obs[:, 3], obs[:, 2])
        error = (target - heading + math.pi) % (2 * math.pi) - math.pi
        actions = np.where(error > 0, TURN_RIGHT, TURN_LEFT)
        actions = np.where(far & (np.abs(error) <= turn / 2), MOVE_FORWARD, actions)
        if not far.any():
            return actions.astype(np.int64)
        turns = np.arange(-TRACK_TURNS, TRACK_TURNS + 1)  # headings reachable in whole turn steps
        headings = heading[:, None] + turns * turn  # (E, K)
        ahead = obs[:, None, :2] + FORWARD_STEP * np.stack([np.cos(headings), np.sin(headings)], axis=-1)
        free = ~self.bumps(ahead.reshape(-1, 2)).reshape(headings.shape)
        off = np.abs((headings - target[:, None] + math.pi) % (2 * math.pi) - math.pi)
        rows = np.arange(len(obs))
        wanted = off.argmin(axis=1)
        best = np.where(free, off, np.inf).argmin(axis=1)
        detour = far & ~free[rows, wanted] & free.any(axis=1)
        chosen = turns[best]
        detour_actions = np.where(chosen == 0, MOVE_FORWARD, np.where(chosen > 0, TURN_RIGHT, TURN_LEFT))
        return np.where(detour, detour_actions, actions).astype(np.int64)

    def track_plan(self, obs: np.ndarray, plan: np.ndarray, k: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(E, 4) poses, (E, H, 4) planned poses, (E,) plan steps executed and (E, 2) goals -> (E,) int64 actions:
        pure pursuit along the plan's path, as the demo tracker follows a demo. The body needs several steps to turn,
        so it reaches a plan's state k + 1 late and, replanning from where it lags, moves at a fraction of the plan's
        pace; it aims instead at the farthest planned position within ``plan_lookahead`` of it, past the planned
        position nearest it, and ``track`` steers there (the planned heading once there). The plan's timing is not
        followed, only its path: replan before the body runs off its end (eval.replan_every).

        Once the plan passes within GOAL_RADIUS of the goal and the goal is within ``plan_lookahead``, it steers at
        the goal itself: the farthest point in reach may lie past the goal, and a body aiming there walks beside the
        goal, outside its radius, and circles it (results/house/COMMAND.md)."""
        rows = np.arange(len(obs))
        positions = plan[:, :, :2]
        gap = np.linalg.norm(positions - obs[:, None, :2], axis=-1)  # (E, H)
        nearest = gap.argmin(axis=1)
        steps = np.arange(plan.shape[1])
        reach = (steps[None] >= nearest[:, None]) & (gap <= self.plan_lookahead)
        aim = np.where(reach, steps[None], -1).max(axis=1)
        aim = np.where(aim < 0, nearest, aim)
        goal = np.asarray(goal, dtype=float)[:, :2]
        offset = goal - obs[:, :2]
        passes = (np.linalg.norm(positions - goal[:, None], axis=-1) <= GOAL_RADIUS).any(axis=1)
        at_goal = passes & (np.linalg.norm(offset, axis=1) <= self.plan_lookahead)
        bearing = np.arctan2(offset[:, 1], offset[:, 0])
        goal_pose = np.column_stack([goal, np.cos(bearing), np.sin(bearing)])
        target = np.where(at_goal[:, None], goal_pose, plan[rows, aim])
        return self.track(obs, target, np.zeros((len(obs), N_ACTIONS)))

    def dead_reckon(self, poses: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(E, 4) poses and (E,) discrete actions -> (E, 4) the poses after them, as HouseEnv.step moves the agent: a
        forward step of FORWARD_STEP along the heading, unless the agent would then touch a wall, a closed doorway or
        a box (it then stays where it was); a turn of TURN_STEP (right raises the heading towards +z)."""
        heading = np.arctan2(poses[:, 3], poses[:, 2])
        actions = np.asarray(actions).reshape(-1)
        heading = heading + math.radians(TURN_STEP) * ((actions == TURN_RIGHT).astype(float) - (actions == TURN_LEFT))
        step = FORWARD_STEP * (actions == MOVE_FORWARD)
        ahead = poses[:, :2] + step[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        stopped = (actions == MOVE_FORWARD) & self.bumps(ahead, slack=0.0)
        position = np.where(stopped[:, None], poses[:, :2], ahead)
        return np.concatenate([position, np.cos(heading)[:, None], np.sin(heading)[:, None]], axis=1)

    def standable(self, positions: np.ndarray) -> np.ndarray:
        """(N, 2) -> (N,) bool: on a room's floor and touching no wall, closed doorway or box."""
        return ~(self.outside(positions) | self.bumps(positions, slack=0.0))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, z0, x1, z1): the rectangle holding every room."""
        x0, z0, x1, z1 = self.layout.extent
        return float(x0), float(z0), float(x1), float(z1)

    def bumps(self, positions: np.ndarray, slack: float = TRACK_SLACK) -> np.ndarray:
        """(N, 2) -> (N,) bool: the agent standing there would touch a wall or a box, as HouseEnv.intersect tests a
        step (its boxes as their true footprints), with ``slack`` metres to spare (the tracker's TRACK_SLACK)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        return touch_rects(positions, self.layout.obstacles, AGENT_RADIUS + slack)

    def source_episodes(self, transitions: int, seed: int) -> Iterator[Episode]:
        """The D4RL recipe on the room graph: one never-reset stream, a new random goal each time one is reached,
        a random action instead of the expert's with probability random_action_prob, cut into fixed-length episodes.
        Actions are stored as (T,) int64 (the env's Discrete(3)); a loaded dataset gives them as (T, 3) one-hot rows
        (agent/worlds/data.py)."""
        data = self.config.dataset
        rng = np.random.default_rng(seed)
        env = self.make_env()
        try:
            sim = house_env(env)  # no wrappers: collection is a hot loop, and the stream is never truncated
            obs, _ = sim.reset(seed=seed)
            expert = HouseExpert(RoutePlanner(self.layout), rng, data.waypoint_jitter)
            self._new_goal(sim, expert, obs, rng)
            obs = sim.observation()  # the stream's first goal is the expert's, not the one reset drew
            done = 0
            while done < transitions:
                steps = min(data.episode_steps, transitions - done)
                episode = EpisodeRecorder(steps, obs, act_dim=None)  # discrete: (T,) int64
                random_step = (rng.random(steps) < data.random_action_prob).tolist()
                random_action = rng.integers(0, N_ACTIONS, size=steps).tolist()
                for t in range(steps):
                    x, z, c, s = obs["observation"].tolist()
                    wanted = expert.act(x, z, c, s)
                    action = random_action[t] if random_step[t] else wanted
                    obs, reward, terminated, _, info = sim.step(action)
                    episode.record(t, obs, action, reward, terminated)
                    if info["success"]:
                        self._new_goal(sim, expert, obs, rng)
                        episode.goals_reached += 1
                    elif action == MOVE_FORWARD and wanted == MOVE_FORWARD and obs["observation"][0] == x and \
                            obs["observation"][1] == z:  # fmt: skip
                        self._replan(sim, expert, obs, rng, blocked=True)
                done += steps
                yield episode.finish()
        finally:
            env.close()

    def _new_goal(
        self, sim: HouseEnv, expert: HouseExpert, obs: dict[str, np.ndarray], rng: np.random.Generator
    ) -> None:
        sim.goal = self.layout.sample_free(rng)
        self._replan(sim, expert, obs, rng)

    def _replan(
        self,
        sim: HouseEnv,
        expert: HouseExpert,
        obs: dict[str, np.ndarray],
        rng: np.random.Generator,
        blocked: bool = False,
    ) -> None:
        while not expert.set_goal(obs["achieved_goal"], sim.goal, blocked):
            sim.goal = self.layout.sample_free(rng)

    def scripted_demo(self, seed: int = 0) -> Demo:
        """The noise-free expert from the fixed start to the fixed goal along the shortest route that keeps clear of
        furniture, closed doorways and zones: the positions it visits, one per step."""
        if self.layout.start is None or self.layout.goal is None:
            raise ValueError(f"variant '{self.config.variant}' has no fixed start and goal to demo")
        env = self.make_env()
        try:
            sim = house_env(env)
            obs, _ = sim.reset(seed=seed, options=self.reset_options())
            expert = HouseExpert(self.planner, np.random.default_rng(seed), 0.0)
            if not expert.set_goal(obs["achieved_goal"], obs["desired_goal"]):
                raise ConfigError(f"{config_file(self.config)}: no route from start to goal")
            points = [obs["achieved_goal"].tolist()]
            for _ in range(self.config.episode_steps):
                obs, _, _, _, info = sim.step(expert.act(*obs["observation"].tolist()))
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
            task="house",
            name=self.config.name,
            variant=self.config.variant,
            source="scripted",
            points=points,
            timestamps=[i * self.control_dt for i in range(len(points))],
        )
