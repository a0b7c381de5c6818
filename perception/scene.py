"""What a perceiver must know about the world behind a picture: the camera calibration, the map a route
is checked against (maze walls, Fetch zones, a house's walls, doorways and furniture), the area regions
are named in, start and goal, and the named rooms and objects a house instruction may mention.

`Scene.from_task(task)` builds one from a task variant; `observe` and `with_walls_from_image` replace
what it knows by what a frame shows, for deployments where only pixels are trusted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mstt.agent.core.config import FETCH_WORKSPACE_HIGH, FETCH_WORKSPACE_LOW
from mstt.agent.core.house_layout import AGENT_RADIUS, segments_cross
from mstt.agent.core.maze_layout import AGENT_Z, WALL_HEIGHT
from mstt.perception.errors import PerceptionError
from mstt.perception.geometry import Box, Calibration, Doorway, MazeGrid, SceneObject
from mstt.perception.segmentation import as_rgb, marker_centroid, read_walls

RegionName = Literal["left", "right", "top", "bottom", "top-left", "top-right", "bottom-left", "bottom-right", "centre"]
REGION_NAMES: tuple[str, ...] = RegionName.__args__
CENTRE_SHARE = 1.0 / 3.0
"""The 'centre' region is the middle third of the area along both image axes."""
_AXIS_PROBE_PX = 10.0
"""Pixel step used to find which world axis points to image-right and image-up."""


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything about the world behind one picture that perception may use."""

    task: str
    """Task family: 'maze', 'fetch' or 'house'."""
    name: str
    """Config name, e.g. 'three-routes' (copied into demos)."""
    variant: str
    """Variant name, e.g. 't1' (copied into demos)."""
    camera: Calibration
    plane_z: float
    """World height of the plane routes lie on: pixels are lifted onto it (maze: the agent's centre)."""
    extent: Box
    """The world area routes live in and regions are named in (maze bounds, Fetch workspace). Its
    dimension is the demo's (2 for the maze, 3 for Fetch)."""
    grid: MazeGrid | None = None
    """Maze cells and walls; None for tasks without a grid."""
    zones: tuple[Box, ...] = ()
    """Forbidden boxes (Fetch zones)."""
    start: np.ndarray | None = None
    """(P,) world position the route starts at, when known."""
    goal: np.ndarray | None = None
    """(P,) world position of the goal ('the red ball', 'the target'), when known."""
    goal_marker_z: float | None = None
    """World height of the drawn goal marker's centre (maze: half the wall height); None: not drawn."""
    rooms: tuple[Box, ...] = ()
    """Named rooms (house), each the rectangle of its floor; a scene with rooms forbids the floor outside them."""
    walls: np.ndarray | None = None
    """(W, 2, 2) wall segments on the route plane a route may not cross (house; closed doorways are in
    `doorways`); None for tasks without thin walls."""
    doorways: tuple[Doorway, ...] = ()
    """Doorways between rooms (house), open or closed: a route may not cross a closed one."""
    furniture: tuple[Box, ...] = ()
    """Named pieces of furniture the agent collides with (house)."""
    objects: tuple[SceneObject, ...] = ()
    """Named goal objects an instruction may point at (house): 'the red ball', 'the blue box'."""
    agent_radius: float = 0.0
    """How far (world units) the agent's body reaches around its centre: routes keep this far from walls."""

    @property
    def pos_dim(self) -> int:
        return len(self.extent.low)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels of the frames the calibration is for."""
        return int(self.camera.width), int(self.camera.height)

    def as_frame(self, image: Any) -> np.ndarray:
        """A PIL image or array as (H, W, 3) uint8, refused unless it has the calibrated size."""
        rgb = as_rgb(image)
        width, height = self.image_size
        if rgb.shape[:2] != (height, width):
            raise PerceptionError(
                f"the image is {rgb.shape[1]}x{rgb.shape[0]} but the scene's camera is calibrated for "
                f"{width}x{height}; render at the calibrated size (the config's render.width/height)"
            )
        return rgb

    def to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(N, P) world points -> (N, 2) pixels; 2-D points are taken on the route plane."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        if points.shape[1] == 2:
            points = np.column_stack([points, np.full(len(points), self.plane_z)])
        return self.camera.world_to_pixel(points)

    def to_world(self, pixels: np.ndarray, plane_z: float | None = None) -> np.ndarray:
        """(N, 2) pixels -> (N, P) world points on the route plane (or on plane_z)."""
        z = self.plane_z if plane_z is None else plane_z
        world = self.camera.pixel_to_world(np.atleast_2d(np.asarray(pixels, dtype=np.float64)), plane_z=z)
        return world[:, : self.pos_dim]

    def forbidden(self, points: np.ndarray) -> np.ndarray:
        """(N, P) world points -> (N,) bool: inside a wall, outside the maze or every room, inside a zone or
        a piece of furniture."""
        points = np.atleast_2d(points)
        hit = np.zeros(len(points), dtype=bool)
        if self.grid is not None:
            hit |= self.grid.in_wall(points)
        if self.rooms:
            hit |= self.room_index(points) < 0
        for box in (*self.zones, *self.furniture):
            hit |= box.contains(points)
        return hit

    def room_index(self, points: np.ndarray) -> np.ndarray:
        """(N, P) world points -> (N,) int: the index in `rooms` of the first room holding each, -1 for none."""
        points = np.atleast_2d(points)
        inside = np.stack([room.contains(points) for room in self.rooms], axis=1) if self.rooms else None
        if inside is None:
            return np.full(len(points), -1)
        return np.where(inside.any(axis=1), inside.argmax(axis=1), -1)

    def room_of(self, point: np.ndarray) -> str | None:
        """The name of the room a world point stands in, None outside every room."""
        index = int(self.room_index(np.asarray(point)[None])[0])
        return None if index < 0 else self.rooms[index].name

    def barrier_crossed(self, a: np.ndarray, b: np.ndarray) -> str | None:
        """What the straight segment a -> b (world points) cuts through: a closed doorway or a wall; None."""
        p, q = np.asarray(a, dtype=np.float64)[None, :2], np.asarray(b, dtype=np.float64)[None, :2]
        closed = [door for door in self.doorways if door.closed]
        if closed:
            ends = np.array([door.ends for door in closed], dtype=np.float64)
            hit = np.flatnonzero(segments_cross(p, q, ends[:, 0], ends[:, 1])[0])
            if len(hit):
                return closed[int(hit[0])].label
        if self.walls is not None and len(self.walls):
            hit = np.flatnonzero(segments_cross(p, q, self.walls[:, 0], self.walls[:, 1])[0])
            if len(hit):
                (x0, z0), (x1, z1) = self.walls[int(hit[0])]
                return f"the wall from ({x0:g}, {z0:g}) to ({x1:g}, {z1:g})"
        return None

    def object_named(self, name: str) -> SceneObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no object {name!r} in the scene; objects: {[obj.name for obj in self.objects]}")

    def replace(self, **changes: Any) -> Scene:
        return dataclasses.replace(self, **changes)

    def observe(self, frame: np.ndarray) -> Scene:
        """This scene with start and goal where the frame's green and red markers are (maze frames).

        Markers not visible keep the known position; scenes without drawn markers come back unchanged.
        """
        if self.grid is None:
            return self
        changes: dict[str, np.ndarray] = {}
        agent = marker_centroid(frame, "agent")
        if agent is not None:
            changes["start"] = self.to_world(agent[None])[0]
        goal = marker_centroid(frame, "goal")
        if goal is not None and self.goal_marker_z is not None:
            changes["goal"] = self.to_world(goal[None], plane_z=self.goal_marker_z)[0]
        return self.replace(**changes)

    def with_walls_from_image(self, frame: np.ndarray) -> Scene:
        """This scene with the wall map read off the frame instead of taken from the config."""
        if self.grid is None:
            raise ValueError(f"a {self.task} scene has no maze grid to read walls into")
        walls = read_walls(frame, self.grid, self.camera)
        return self.replace(grid=MazeGrid(walls=walls, wall_height=self.grid.wall_height))

    def image_axes(self) -> tuple[tuple[int, float], tuple[int, float]]:
        """((axis, sign) of image-right, (axis, sign) of image-up) as world axes of the route plane.

        Regions ('left half', 'top-right') are named as the picture shows them, whatever the camera's
        azimuth; a camera not aligned with a world axis gets the nearest one.
        """
        w, h = self.image_size
        centre = np.array([[w / 2, h / 2]])
        origin = self.to_world(centre)[0, :2]
        right = self.to_world(centre + [_AXIS_PROBE_PX, 0.0])[0, :2] - origin
        up = self.to_world(centre - [0.0, _AXIS_PROBE_PX])[0, :2] - origin
        axes = []
        for direction in (right, up):
            axis = int(np.argmax(np.abs(direction)))
            axes.append((axis, float(np.sign(direction[axis]))))
        return axes[0], axes[1]

    def region(self, name: str) -> Box:
        """The named part of the scene's extent as the picture shows it: halves, quadrants, 'centre'."""
        if name not in REGION_NAMES:
            raise ValueError(f"unknown region {name!r}; known: {list(REGION_NAMES)}")
        low, high = np.array(self.extent.low), np.array(self.extent.high)
        mid = (low + high) / 2
        (right_axis, right_sign), (up_axis, up_sign) = self.image_axes()
        if name == "centre":
            for axis in (right_axis, up_axis):
                span = high[axis] - low[axis]
                low[axis], high[axis] = mid[axis] - span * CENTRE_SHARE / 2, mid[axis] + span * CENTRE_SHARE / 2
            return Box(low=tuple(low), high=tuple(high), name=name)
        for word in name.split("-"):
            axis, sign = (right_axis, right_sign) if word in ("left", "right") else (up_axis, up_sign)
            positive = (word in ("right", "top")) == (sign > 0)
            if positive:
                low[axis] = mid[axis]
            else:
                high[axis] = mid[axis]
        return Box(low=tuple(low), high=tuple(high), name=name)

    @classmethod
    def from_task(cls, task: Any, camera: Calibration | None = None, plane_z: float | None = None) -> Scene:
        """The scene of a task variant (mstt.agent.worlds.make_task): its calibration, map, start and goal.

        Maze: the task's own top-down camera; start and goal are their cells' centres (the env adds up
        to 0.25 of reset noise: `observe(frame)` reads the exact ones off a frame).
        Fetch: FetchTask has no calibrated camera, so give one (e.g. a FreeCamera looking down at the
        table) and the route plane's height (default: the goal's height).
        House: the task's top-down map (a TopDownMap of the floor); rooms, walls, doorways, furniture and
        objects by their config names; start and goal as the config gives them (the env starts there exactly).
        """
        family = task.config.task
        if family not in _SCENE_BUILDERS:
            raise ValueError(f"no perception scene for task family {family!r}; known: {sorted(_SCENE_BUILDERS)}")
        return _SCENE_BUILDERS[family](task, camera, plane_z)


def _maze_scene(task: Any, camera: Calibration | None, plane_z: float | None) -> Scene:
    config, layout = task.config, task.layout
    grid = MazeGrid(walls=layout.walls.copy(), wall_height=WALL_HEIGHT)
    return Scene(
        task="maze",
        name=config.name,
        variant=config.variant,
        camera=camera if camera is not None else task.camera,
        plane_z=AGENT_Z if plane_z is None else plane_z,
        extent=grid.bounds(),
        grid=grid,
        start=None if layout.start is None else layout.cell_to_xy(layout.start),
        goal=None if layout.goal is None else layout.cell_to_xy(layout.goal),
        goal_marker_z=WALL_HEIGHT / 2,
    )


def _fetch_scene(task: Any, camera: Calibration | None, plane_z: float | None) -> Scene:
    config = task.config
    camera = camera if camera is not None else getattr(task, "camera", None)
    if camera is None:
        raise ValueError(
            "FetchTask has no calibrated camera: pass camera=mstt.agent.core.camera.FreeCamera(...) "
            "that renders the table top-down"
        )
    if plane_z is None:
        if config.goal is None:
            raise ValueError(f"variant '{config.variant}' has no fixed goal; give plane_z")
        plane_z = float(config.goal[2])
    return Scene(
        task="fetch",
        name=config.name,
        variant=config.variant,
        camera=camera,
        plane_z=plane_z,
        extent=Box(low=FETCH_WORKSPACE_LOW, high=FETCH_WORKSPACE_HIGH, name="workspace"),
        zones=tuple(Box(low=z.low, high=z.high, name=f"zone {i + 1}") for i, z in enumerate(config.zones)),
        goal=None if config.goal is None else np.asarray(config.goal, dtype=np.float64),
    )


def _rect_box(rect: np.ndarray, name: str) -> Box:
    return Box(low=(float(rect[0]), float(rect[1])), high=(float(rect[2]), float(rect[3])), name=name)


def _house_scene(task: Any, camera: Calibration | None, plane_z: float | None) -> Scene:
    """The house on its floor plane: world points are (x, z) metres, the map's calibration is exact."""
    config = task.config
    layout = task.layout
    names = layout.room_names
    return Scene(
        task="house",
        name=config.name,
        variant=config.variant,
        camera=camera if camera is not None else task.camera,
        plane_z=0.0 if plane_z is None else plane_z,
        extent=_rect_box(np.array(layout.extent), "house"),
        zones=tuple(_rect_box(rect, zone.name) for rect, zone in zip(layout.zones, config.zones)),
        start=None if layout.start is None else layout.start.copy(),
        goal=None if layout.goal is None else layout.goal.copy(),
        rooms=tuple(_rect_box(rect, name) for rect, name in zip(layout.rooms, names)),
        walls=layout.walls.copy(),
        doorways=tuple(
            Doorway(
                rooms=(names[o.rooms[0]], names[o.rooms[1]]),
                ends=(tuple(o.segment[0].tolist()), tuple(o.segment[1].tolist())),
                closed=o.closed,
            )
            for o in layout.openings
        ),
        furniture=tuple(
            _rect_box(rect, box.name or f"boxes[{i}]") for i, (rect, box) in enumerate(zip(layout.boxes, config.boxes))
        ),
        objects=tuple(
            SceneObject(name=o.name, kind=o.kind, colour=o.colour, position=(float(o.at[0]), float(o.at[1])))
            for o in config.objects
        ),
        agent_radius=AGENT_RADIUS,
    )


_SCENE_BUILDERS: dict[str, Callable[[Any, Calibration | None, float | None], Scene]] = {
    "maze": _maze_scene,
    "fetch": _fetch_scene,
    "house": _house_scene,
}
"""Task family -> the function that builds its Scene from a task variant (and an optional camera, plane)."""
