"""The floor plan of a house variant: rooms, doorways, walls, furniture, zones, and shortest routes over the
room/doorway graph, as pure geometry on the (x, z) floor (metres), shared by the house world and perception.

HouseLayout checks what a config's field types cannot (rooms overlap, a doorway leads nowhere, a name that does not
exist) and raises ValueError naming the field and value; `RoutePlanner` finds routes with the agent's clearance.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from mstt.agent.core.config import HouseConfig

AGENT_RADIUS = 0.4
"""Radius of MiniWorld's agent (Agent.radius): it collides with walls and furniture at this distance."""
PLAN_MARGIN = 0.1
"""Clearance the route planner keeps beyond the agent's radius, so that a tracked route does not scrape walls."""
CLEARANCE = AGENT_RADIUS + PLAN_MARGIN
DOOR_DEPTH = CLEARANCE + 0.15
"""How far into each room a doorway's approach points lie: routes pass a doorway square to the wall."""
CORNER_GAP = 0.02
"""Routes round a box's (or zone's) inflated corner this far outside it, so the corner point itself is clear."""
ZONE_MARGIN = 0.1
"""Distance (metres) a route planned around a forbidden zone keeps from it (the agent's centre is what counts)."""
TOUCH = 1e-6
"""Tolerance (metres) within which two walls coincide."""
WALL_RGB = (0, 0, 0)
CLOSED_DOORWAY_RGB = (255, 0, 255)
"""Colours of the walls and of the closed doorways on the top-down map (MiniWorld's walls have no thickness: seen
from above they vanish, so HouseEnv.render_map draws them over its picture, and perception reads them back).
Magenta is far from every colour the map otherwise shows; black is 47 levels from the darkest floor checker."""
EDGES = {"east": 0, "north": 1, "west": 2, "south": 3}
"""MiniWorld's edge index of each wall of a rectangular room (add_rect_room): east x = max, north z = min, west x =
min, south z = max."""

Rect = tuple[float, float, float, float]
"""(x0, z0, x1, z1) with x0 < x1, z0 < z1."""


@dataclass(frozen=True)
class Opening:
    """A doorway resolved to geometry: where it lies on which wall."""

    index: int
    """Its position in the config's doorways list."""
    rooms: tuple[int, int]
    edges: tuple[int, int]
    """MiniWorld's edge index of the shared wall in each of the two rooms."""
    axis: int
    """0: the wall is x = const (the opening runs along z); 1: z = const (it runs along x)."""
    wall: float
    """The wall's constant coordinate."""
    low: float
    high: float
    """The opening's extent along the wall."""
    closed: bool

    @property
    def centre(self) -> np.ndarray:
        mid = (self.low + self.high) / 2
        return np.array([self.wall, mid]) if self.axis == 0 else np.array([mid, self.wall])

    @property
    def normal(self) -> np.ndarray:
        """Unit vector across the wall, from rooms[0] into rooms[1]."""
        sign = 1.0 if self.edges[0] in (EDGES["east"], EDGES["south"]) else -1.0
        return np.array([sign, 0.0]) if self.axis == 0 else np.array([0.0, sign])

    @property
    def segment(self) -> np.ndarray:
        """(2, 2) the opening's two ends on the floor."""
        if self.axis == 0:
            return np.array([[self.wall, self.low], [self.wall, self.high]])
        return np.array([[self.low, self.wall], [self.high, self.wall]])


def _shared_wall(a: Rect, b: Rect) -> tuple[int, int, int, float, float, float] | None:
    """(axis, edge in a, edge in b, wall coordinate, overlap low, overlap high) of the wall two rooms share."""
    candidates = (
        (0, EDGES["east"], EDGES["west"], a[2], b[0], a[1], a[3], b[1], b[3]),
        (0, EDGES["west"], EDGES["east"], a[0], b[2], a[1], a[3], b[1], b[3]),
        (1, EDGES["south"], EDGES["north"], a[3], b[1], a[0], a[2], b[0], b[2]),
        (1, EDGES["north"], EDGES["south"], a[1], b[3], a[0], a[2], b[0], b[2]),
    )
    for axis, edge_a, edge_b, wall_a, wall_b, lo_a, hi_a, lo_b, hi_b in candidates:
        low, high = max(lo_a, lo_b), min(hi_a, hi_b)
        if abs(wall_a - wall_b) < TOUCH and high - low > TOUCH:
            return axis, edge_a, edge_b, wall_a, low, high
    return None


def _rect_text(rect: Rect) -> str:
    return f"x [{rect[0]:g}, {rect[2]:g}], z [{rect[1]:g}, {rect[3]:g}]"


def point_segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, 2) points, (W, 2) segment starts and ends -> (P, W) distances."""
    ab = b - a
    ap = points[:, None, :] - a[None]
    t = np.clip((ap * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12)[None], 0.0, 1.0)
    return np.linalg.norm(ap - t[..., None] * ab[None], axis=-1)


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def segments_cross(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(S, 2) segments p->q and (W, 2) segments a->b -> (S, W) bool: they intersect (touching counts)."""
    p, q, a, b = p[:, None], q[:, None], a[None], b[None]
    d1, d2 = _cross(a, b, p), _cross(a, b, q)
    d3, d4 = _cross(p, q, a), _cross(p, q, b)
    proper = (d1 * d2 <= 0) & (d3 * d4 <= 0)
    # Collinear segments: the orientation test passes; require their extents to overlap too.
    collinear = (np.abs(d1) < 1e-12) & (np.abs(d2) < 1e-12)
    lo = np.minimum(p, q) - 1e-12
    hi = np.maximum(p, q) + 1e-12
    overlap = ((np.maximum(a, b) >= lo) & (np.minimum(a, b) <= hi)).all(-1)
    return proper & (~collinear | overlap)


def segment_segment_distance(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(S, 2) segments p->q and (W, 2) segments a->b -> (S, W) shortest distances."""
    if len(a) == 0:
        return np.full((len(p), 0), np.inf)
    ends = np.minimum(point_segment_distance(p, a, b), point_segment_distance(q, a, b))
    sides = np.minimum(point_segment_distance(a, p, q), point_segment_distance(b, p, q)).T
    return np.where(segments_cross(p, q, a, b), 0.0, np.minimum(ends, sides))


def segments_hit_rects(p: np.ndarray, q: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """(S, 2) segments p->q and (R, 4) rectangles -> (S, R) bool: the segment enters the rectangle (slab test)."""
    if len(rects) == 0:
        return np.zeros((len(p), 0), dtype=bool)
    d = (q - p)[:, None, :]
    low, high = rects[None, :, :2], rects[None, :, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (low - p[:, None]) / d, (high - p[:, None]) / d
    parallel = np.abs(d) < 1e-12
    inside = (p[:, None] > low) & (p[:, None] < high)
    t_near = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t0, t1)).max(-1)
    t_far = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t0, t1)).min(-1)
    return (t_near < t_far) & (t_far > 0) & (t_near < 1)


def points_in_rects(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """(P, 2) points, (R, 4) rectangles -> (P, R) bool: strictly inside."""
    return (
        (points[:, None, 0] > rects[None, :, 0]) & (points[:, None, 0] < rects[None, :, 2])
        & (points[:, None, 1] > rects[None, :, 1]) & (points[:, None, 1] < rects[None, :, 3])
    )  # fmt: skip


def touch_rects(points: np.ndarray, rects: np.ndarray, radius: float) -> np.ndarray:
    """(P, 2) points, (R, 4) rectangles (a wall is one of zero width) -> (P,) bool: a disc of ``radius`` at the point
    overlaps some rectangle (the Euclidean distance to it, 0 inside, is below ``radius``)."""
    if len(rects) == 0:
        return np.zeros(len(points), dtype=bool)
    x, z = points[:, :1], points[:, 1:2]
    dx = np.maximum(np.maximum(rects[:, 0] - x, x - rects[:, 2]), 0.0)  # (P, R)
    dz = np.maximum(np.maximum(rects[:, 1] - z, z - rects[:, 3]), 0.0)
    return np.asarray((dx * dx + dz * dz < radius * radius).any(-1))


def inflate(rects: np.ndarray, by: float) -> np.ndarray:
    return rects + np.array([-by, -by, by, by])


class HouseLayout:
    """Rooms, doorways (open and closed), the walls they leave, furniture, zones, objects, start and goal."""

    def __init__(self, config: HouseConfig) -> None:
        self.config = config
        self.room_names = [room.name for room in config.rooms]
        self.rooms = np.array([(r.x[0], r.z[0], r.x[1], r.z[1]) for r in config.rooms], dtype=np.float64)
        self._check_rooms()
        self.openings = [self._opening(i) for i in range(len(config.doorways))]
        self._check_openings()
        self.boxes = np.array([(b.at[0] - b.size[0] / 2, b.at[1] - b.size[1] / 2,
                                b.at[0] + b.size[0] / 2, b.at[1] + b.size[1] / 2) for b in config.boxes],
                              dtype=np.float64).reshape(-1, 4)  # fmt: skip
        self.zones = np.array([(z.x[0], z.z[0], z.x[1], z.z[1]) for z in config.zones], dtype=np.float64).reshape(-1, 4)
        self.walls = self._walls()
        wall_rects = np.concatenate([self.walls.min(axis=1), self.walls.max(axis=1)], axis=1)
        self.obstacles = np.concatenate([wall_rects, self.boxes])
        """(W + B, 4) rectangles the agent's body must not touch: the walls (axis-aligned: of zero width) and boxes."""
        self.closed = np.array([o.segment for o in self.openings if o.closed]).reshape(-1, 2, 2)
        self._check_boxes_and_objects()
        self.objects = {obj.name: np.array(obj.at, dtype=np.float64) for obj in config.objects}
        self.start, self.heading = self._start()
        self.goal = self._goal()
        if (self.start is None) != (self.goal is None):
            raise ValueError("give both a start and a goal (fields 'start' and 'goal'), or neither")

    # --- checks -----------------------------------------------------------------------------------------------------

    def _check_rooms(self) -> None:
        seen: dict[str, int] = {}
        for i, name in enumerate(self.room_names):
            if name in seen:
                raise ValueError(f"field 'rooms[{i}].name' = {name!r}: rooms[{seen[name]}] has that name already")
            seen[name] = i
        for i in range(len(self.rooms)):
            for j in range(i):
                a, b = self.rooms[i], self.rooms[j]
                dx, dz = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
                if dx > TOUCH and dz > TOUCH:
                    raise ValueError(
                        f"field 'rooms[{i}]' = {self.room_names[i]!r} ({_rect_text(tuple(a))}) overlaps rooms[{j}] "
                        f"{self.room_names[j]!r} ({_rect_text(tuple(b))}) by {dx:g} x {dz:g} m; rooms may share "
                        "walls but not floor"
                    )

    def room_index(self, name: str, field: str) -> int:
        if name not in self.room_names:
            raise ValueError(f"field '{field}' = {name!r}: no room of that name; rooms: {self.room_names}")
        return self.room_names.index(name)

    def _opening(self, i: int) -> Opening:
        door = self.config.doorways[i]
        a = self.room_index(door.rooms[0], f"doorways[{i}].rooms[0]")
        b = self.room_index(door.rooms[1], f"doorways[{i}].rooms[1]")
        shared = _shared_wall(tuple(self.rooms[a]), tuple(self.rooms[b])) if a != b else None
        if shared is None:
            raise ValueError(
                f"field 'doorways[{i}].rooms' = {list(door.rooms)}: the doorway leads nowhere: these rooms share no "
                f"wall ({door.rooms[0]!r}: {_rect_text(tuple(self.rooms[a]))}; {door.rooms[1]!r}: "
                f"{_rect_text(tuple(self.rooms[b]))})"
            )
        axis, edge_a, edge_b, wall, low, high = shared
        lo, hi = door.at - door.width / 2, door.at + door.width / 2
        along = "z" if axis == 0 else "x"
        if lo < low - TOUCH or hi > high + TOUCH:
            raise ValueError(
                f"field 'doorways[{i}].at' = {door.at:g}: the opening {along} [{lo:g}, {hi:g}] leads nowhere: it "
                f"does not lie on the wall {door.rooms[0]!r} and {door.rooms[1]!r} share ({'xz'[axis]} = {wall:g}, "
                f"{along} from {low:g} to {high:g})"
            )
        if door.width < 2 * CLEARANCE:
            raise ValueError(
                f"field 'doorways[{i}].width' = {door.width:g}: the agent ({2 * AGENT_RADIUS:g} m wide) needs at "
                f"least {2 * CLEARANCE:g} m to pass; close the doorway instead (closed: true)"
            )
        return Opening(i, (a, b), (edge_a, edge_b), axis, wall, lo, hi, door.closed)

    def _check_openings(self) -> None:
        for o in self.openings:
            for other in self.openings[: o.index]:
                same_wall = o.axis == other.axis and abs(o.wall - other.wall) < TOUCH
                if same_wall and o.low < other.high and other.low < o.high and set(o.rooms) & set(other.rooms):
                    raise ValueError(
                        f"field 'doorways[{o.index}].at' = {self.config.doorways[o.index].at:g}: the opening "
                        f"overlaps doorways[{other.index}] on the same wall"
                    )

    def _walls(self) -> np.ndarray:
        """(W, 2, 2) wall segments on the floor: every room's four sides less its open doorways."""
        segments = []
        for r, (x0, z0, x1, z1) in enumerate(self.rooms):
            sides = {  # edge -> (axis, wall, low, high)
                EDGES["east"]: (0, x1, z0, z1), EDGES["west"]: (0, x0, z0, z1),
                EDGES["north"]: (1, z0, x0, x1), EDGES["south"]: (1, z1, x0, x1),
            }  # fmt: skip
            for edge, (axis, wall, low, high) in sides.items():
                gaps = sorted((o.low, o.high) for o in self.openings
                              if not o.closed and r in o.rooms and o.edges[o.rooms.index(r)] == edge)  # fmt: skip
                cuts = [low]
                for g_low, g_high in gaps:
                    cuts += [g_low, g_high]
                cuts.append(high)
                for s, e in zip(cuts[::2], cuts[1::2]):
                    if e - s > TOUCH:
                        ends = [[wall, s], [wall, e]] if axis == 0 else [[s, wall], [e, wall]]
                        segments.append(ends)
        return np.array(segments, dtype=np.float64).reshape(-1, 2, 2)

    def _check_boxes_and_objects(self) -> None:
        for i, box in enumerate(self.boxes):
            corners = np.array([[box[0], box[1]], [box[2], box[3]]])
            if not self.in_one_room(corners):
                raise ValueError(
                    f"field 'boxes[{i}].at' = {list(self.config.boxes[i].at)}: its footprint "
                    f"({_rect_text(tuple(box))}) does not fit inside one room"
                )
        names: dict[str, int] = {}
        for i, obj in enumerate(self.config.objects):
            if obj.name in names:
                raise ValueError(f"field 'objects[{i}].name' = {obj.name!r}: objects[{names[obj.name]}] has that name")
            names[obj.name] = i
            self._check_free(np.array(obj.at), f"objects[{i}].at")
        for i, zone in enumerate(self.zones):
            if not (points_in_rects(np.array([[(zone[0] + zone[2]) / 2, (zone[1] + zone[3]) / 2]]), self.rooms)).any():
                raise ValueError(f"field 'zones[{i}]' = {_rect_text(tuple(zone))}: its centre lies outside every room")

    def _check_free(self, point: np.ndarray, field: str) -> None:
        """A point where something stands must be inside a room and outside every box."""
        if not self.in_rooms(point[None])[0]:
            raise ValueError(f"field '{field}' = {point.tolist()} lies outside every room")
        inside = np.flatnonzero(points_in_rects(point[None], self.boxes)[0])
        if len(inside):
            raise ValueError(f"field '{field}' = {point.tolist()} lies inside {self.box_name(int(inside[0]))}")

    def box_name(self, i: int) -> str:
        name = self.config.boxes[i].name
        return f"box {name!r} (boxes[{i}])" if name else f"boxes[{i}]"

    def _start(self) -> tuple[np.ndarray | None, float]:
        start = self.config.start
        if start is None:
            return None, 0.0
        room = self.room_index(start.room, "start.room")
        at = np.array(start.at, dtype=np.float64)
        self._check_free(at, "start.at")
        if not points_in_rects(at[None], self.rooms[room : room + 1])[0, 0]:
            raise ValueError(f"field 'start.at' = {at.tolist()} is not inside room {start.room!r}")
        if self.clearance(at[None])[0] < AGENT_RADIUS:
            raise ValueError(
                f"field 'start.at' = {at.tolist()}: the agent (radius {AGENT_RADIUS:g} m) would overlap a wall or a box"
            )
        if self.in_zones(at[None])[0]:
            raise ValueError(f"field 'start.at' = {at.tolist()} lies inside a forbidden zone")
        return at, math.radians(start.heading)

    def _goal(self) -> np.ndarray | None:
        goal = self.config.goal
        if goal is None:
            return None
        if isinstance(goal, str):
            if goal not in self.objects:
                raise ValueError(
                    f"field 'goal' = {goal!r}: no object of that name in the house; objects: {sorted(self.objects)}"
                )
            point = self.objects[goal]
        else:
            point = np.array(goal, dtype=np.float64)
            self._check_free(point, "goal")
        if self.in_zones(point[None])[0]:
            raise ValueError(f"field 'goal' = {goal!r} lies inside a forbidden zone")
        return point

    # --- geometry ---------------------------------------------------------------------------------------------------

    @property
    def extent(self) -> Rect:
        """(min x, min z, max x, max z) of all rooms."""
        return (float(self.rooms[:, 0].min()), float(self.rooms[:, 1].min()),
                float(self.rooms[:, 2].max()), float(self.rooms[:, 3].max()))  # fmt: skip

    def in_rooms(self, points: np.ndarray) -> np.ndarray:
        """(P, 2) -> (P,) bool: on the floor of some room (its walls included)."""
        return np.asarray(self.in_each_room(points).any(-1))

    def in_one_room(self, corners: np.ndarray) -> bool:
        """Whether the rectangle spanned by (2, 2) corners lies inside a single room."""
        r = self.rooms
        return bool(((r[:, 0] <= corners[0, 0] + TOUCH) & (r[:, 1] <= corners[0, 1] + TOUCH)
                     & (r[:, 2] >= corners[1, 0] - TOUCH) & (r[:, 3] >= corners[1, 1] - TOUCH)).any())  # fmt: skip

    def room_of(self, point: np.ndarray) -> str | None:
        """The name of the (first) room whose floor holds ``point``, None off every room."""
        inside = np.flatnonzero(self.in_each_room(point[None])[0])
        return self.room_names[int(inside[0])] if len(inside) else None

    def in_each_room(self, points: np.ndarray) -> np.ndarray:
        """(P, 2) -> (P, R) bool: on the floor of each room (its walls included)."""
        r = self.rooms
        return (
            (points[:, None, 0] >= r[None, :, 0]) & (points[:, None, 0] <= r[None, :, 2])
            & (points[:, None, 1] >= r[None, :, 1]) & (points[:, None, 1] <= r[None, :, 3])
        )  # fmt: skip

    def in_boxes(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points_in_rects(points, self.boxes).any(-1))

    def in_zones(self, points: np.ndarray) -> np.ndarray:
        """(P, 2) -> (P,) bool: the agent's centre inside a forbidden zone (its edges included)."""
        z = self.zones
        inside = (
            (points[:, None, 0] >= z[None, :, 0]) & (points[:, None, 0] <= z[None, :, 2])
            & (points[:, None, 1] >= z[None, :, 1]) & (points[:, None, 1] <= z[None, :, 3])
        )  # fmt: skip
        return np.asarray(inside.any(-1))

    def clearance(self, points: np.ndarray) -> np.ndarray:
        """(P, 2) -> (P,) distance to the nearest wall or box (0 inside a box). A box's distance is the Chebyshev
        one (its footprint inflated as a square), as the planner inflates boxes: points beside a box's corner count as
        a little closer than they are, so a point the planner calls free is one it can plan from."""
        walls = point_segment_distance(points, self.walls[:, 0], self.walls[:, 1]).min(-1, initial=np.inf)
        if len(self.boxes) == 0:
            return walls
        below, above = self.boxes[None, :, :2] - points[:, None], points[:, None] - self.boxes[None, :, 2:]
        gap = np.maximum(np.maximum(below, above), 0.0)
        return np.minimum(walls, gap.max(-1).min(-1))

    def free(self, points: np.ndarray, clearance: float = CLEARANCE) -> np.ndarray:
        """(P, 2) -> (P,) bool: where the agent's centre may stand with ``clearance`` to walls and furniture."""
        return self.in_rooms(points) & (self.clearance(points) >= clearance)

    def sample_free(self, rng: np.random.Generator, avoid_zones: bool = False) -> np.ndarray:
        """A uniformly random point of the free floor (rejection sampling in rooms weighted by area)."""
        areas = (self.rooms[:, 2] - self.rooms[:, 0]) * (self.rooms[:, 3] - self.rooms[:, 1])
        for _ in range(10_000):
            room = self.rooms[rng.choice(len(self.rooms), p=areas / areas.sum())]
            point = rng.uniform(room[:2], room[2:])
            if self.free(point[None])[0] and not (avoid_zones and self.in_zones(point[None])[0]):
                return point
        raise ValueError("the house has no free floor for the agent to stand on")


class RoutePlanner:
    """Shortest routes of the agent's centre over the room/doorway graph: doorway points and the corners of
    furniture (and of forbidden zones, with ``avoid_zones``) joined where the straight line between them keeps the
    agent's clearance; a query joins its start and goal to that graph and runs Dijkstra."""

    def __init__(self, layout: HouseLayout, avoid_zones: bool = False) -> None:
        self.layout = layout
        self.avoid_zones = avoid_zones and len(layout.zones) > 0
        self.nodes = self._nodes()
        n = len(self.nodes)
        i, j = np.triu_indices(n, k=1)
        ok = self.clear(self.nodes[i], self.nodes[j])
        self.lengths = np.full((n, n), np.inf)
        length = np.linalg.norm(self.nodes[i] - self.nodes[j], axis=-1)
        self.lengths[i[ok], j[ok]] = length[ok]
        self.lengths[j[ok], i[ok]] = length[ok]

    def _nodes(self) -> np.ndarray:
        layout, nodes = self.layout, []
        doors = [o for o in layout.openings if not o.closed]
        for o in doors:
            nodes += [o.centre, o.centre - DOOR_DEPTH * o.normal, o.centre + DOOR_DEPTH * o.normal]
        corners = [inflate(layout.boxes, CLEARANCE + CORNER_GAP)]
        if self.avoid_zones:
            corners.append(inflate(layout.zones, ZONE_MARGIN + CORNER_GAP))
        for rects in corners:
            for x0, z0, x1, z1 in rects:
                nodes += [np.array(p) for p in ((x0, z0), (x1, z0), (x0, z1), (x1, z1))]
        if not nodes:
            return np.zeros((0, 2))
        points = np.array(nodes)
        keep = self.free_points(points)
        keep[: 3 * len(doors) : 3] = True  # a doorway's centre lies on its wall line, half its width from the jambs
        return points[keep]

    def free_points(self, points: np.ndarray, clearance: float = CLEARANCE) -> np.ndarray:
        keep = self.layout.free(points, clearance)
        if self.avoid_zones:
            keep &= ~points_in_rects(points, inflate(self.layout.zones, ZONE_MARGIN)).any(-1)
        return keep

    def clear(self, p: np.ndarray, q: np.ndarray, clearance: float = CLEARANCE) -> np.ndarray:
        """(S, 2) segments p->q -> (S,) bool: the agent's centre can move along it keeping ``clearance``."""
        layout = self.layout
        walls = segment_segment_distance(p, q, layout.walls[:, 0], layout.walls[:, 1]).min(-1, initial=np.inf)
        ok = (walls >= clearance - 1e-9) & ~segments_hit_rects(p, q, inflate(layout.boxes, clearance)).any(-1)
        if self.avoid_zones:
            ok &= ~segments_hit_rects(p, q, inflate(layout.zones, ZONE_MARGIN)).any(-1)
        return ok

    def route(self, start: np.ndarray, goal: np.ndarray) -> list[np.ndarray] | None:
        """Waypoints after ``start`` up to ``goal`` inclusive, or None when no route exists. A start or goal that
        stands closer to a wall than the planner's clearance (the agent may) is joined with that smaller clearance."""
        ends = np.stack([start, goal])
        slack = float(min(CLEARANCE, self.layout.clearance(ends).min() - 1e-6))
        if self.clear(start[None], goal[None], slack)[0]:
            return [goal]
        n = len(self.nodes)
        from_start = np.where(self.clear(np.repeat(start[None], n, 0), self.nodes, slack),
                              np.linalg.norm(self.nodes - start, axis=-1), np.inf)  # fmt: skip
        to_goal = np.where(self.clear(self.nodes, np.repeat(goal[None], n, 0), slack),
                           np.linalg.norm(self.nodes - goal, axis=-1), np.inf)  # fmt: skip
        dist = np.full(n, np.inf)
        previous = np.full(n, -1)
        heap = [(float(d), int(k)) for k, d in enumerate(from_start) if np.isfinite(d)]
        for d, k in heap:
            dist[k] = d
        heapq.heapify(heap)
        done = np.zeros(n, dtype=bool)
        while heap:
            d, k = heapq.heappop(heap)
            if done[k]:
                continue
            done[k] = True
            better = d + self.lengths[k] < dist
            for m in np.flatnonzero(better & ~done):
                dist[m] = d + self.lengths[k, m]
                previous[m] = k
                heapq.heappush(heap, (float(dist[m]), int(m)))
        total = dist + to_goal
        if n == 0 or not np.isfinite(total.min()):
            return None
        k = int(total.argmin())
        path = [goal]
        while k >= 0:
            path.append(self.nodes[k])
            k = int(previous[k])
        return path[::-1]
