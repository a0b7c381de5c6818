"""Goals in a house, read from the names the scene knows: "go to the red ball in the far room", "reach the
blue box without crossing the wet floor", "go to the kitchen" -> a Goal on the floor (x, z).

Colour and kind pick an object; "in the kitchen" or "in the far room" picks among several. The far (near) room
is the one whose centre lies farthest from (nearest to) the agent in a straight line: a plain, stable reading
that needs no planner. Naming a room goes to the free point nearest its centre. "Without crossing" / "avoid" /
"stay out of" a zone, room or piece of furniture adds its box to the goal's avoid list. Every word is
accounted for: a word the reader cannot place is named in the refusal, as in perception.goals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from mstt.agent.core.config import HOUSE_COLOURS
from mstt.perception.errors import GoalParseError
from mstt.perception.geometry import Box, SceneObject
from mstt.perception.goal_types import Goal, GoalKind
from mstt.perception.goal_words import FILLER_WORDS, plain
from mstt.perception.scene import Scene

KIND_WORDS = {"ball": "ball", "sphere": "ball", "box": "box", "cube": "box", "crate": "box", "key": "key"}
"""Words for the kinds of goal objects (plurals are read too)."""
COLOUR_WORDS = {**{colour: colour for colour in HOUSE_COLOURS}, "gray": "grey", "violet": "purple"}
FAR_WORDS = {"far": "far", "farthest": "far", "furthest": "far", "far-away": "far", "other": "far",
             "near": "near", "nearest": "near", "closest": "near", "same": "near", "this": "near"}  # fmt: skip
"""Words that pick a room by its distance from the agent."""
HOUSE_FILLER = frozenset({"room", "house", "object", "thing", "and", "then", "please", "way", "across"})
"""Words a house instruction may use without meaning, besides perception.goal_words.FILLER_WORDS."""
ROOM_GRID_STEP = 0.1
"""Metres between the candidate points searched for a room's free point nearest its centre."""
ROOM_MARGIN = 0.1
"""Metres a room target keeps beyond the agent's radius from walls and furniture."""
_AVOID = (
    r"\b(?:without\s+(?:crossing|entering|touching|stepping\s+(?:on|in|into)|walking\s+(?:on|over|through|across|"
    r"into)|going\s+(?:through|into|across|over|on)|passing\s+(?:through|over|by)|using)|avoid(?:ing|s)?|"
    r"(?:stay|keep)(?:ing)?\s+(?:out\s+of|off|away\s+from|clear\s+of)|(?:do\s+not|don't|never|not)\s+(?:cross|"
    r"enter|touch|step\s+(?:on|in|into)|walk\s+(?:on|over|through|across|into)|go\s+(?:through|into|across|over|on)|"
    r"pass\s+(?:through|over)))\s+"
)
_WORD = re.compile(r"[a-z0-9'-]+")


def _phrase(name: str) -> str:
    """A config name ('wet_floor') as a regex matching its words ('wet floor', 'wet_floor', 'wet-floor')."""
    return r"[\s_-]+".join(re.escape(part) for part in re.split(r"[\s_-]+", name.lower()))


def _names(names: Sequence[str]) -> str:
    return "|".join(_phrase(name) for name in sorted(names, key=len, reverse=True))


def _blank(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def _spoken(name: str) -> str:
    return name.replace("_", " ")


def _known_objects(scene: Scene) -> str:
    return ", ".join(obj.label for obj in scene.objects) or "none"


def _room_centre(room: Box) -> np.ndarray:
    return np.asarray(room.centre, dtype=np.float64)[:2]


def room_target(scene: Scene, room: Box, avoid: Sequence[Box] = ()) -> np.ndarray:
    """The free point of a room nearest its centre: the agent's body clear of its walls and furniture, outside
    every zone and every box to avoid."""
    keep = scene.agent_radius + ROOM_MARGIN
    low, high = np.asarray(room.low[:2]) + keep, np.asarray(room.high[:2]) - keep
    if np.any(low >= high):
        raise GoalParseError(f"the {_spoken(room.name)} is too small for the agent to stand in")
    xs = np.arange(low[0], high[0] + 1e-9, ROOM_GRID_STEP)
    zs = np.arange(low[1], high[1] + 1e-9, ROOM_GRID_STEP)
    points = np.stack(np.meshgrid(xs, zs, indexing="ij"), axis=-1).reshape(-1, 2)
    free = ~scene.forbidden(points)
    for box in (*scene.furniture, *avoid):
        grown = Box(low=tuple(np.asarray(box.low[:2]) - keep), high=tuple(np.asarray(box.high[:2]) + keep))
        free &= ~grown.contains(points)
    if not free.any():
        raise GoalParseError(f"the {_spoken(room.name)} has no free floor for the agent to stand on")
    candidates = points[free]
    return np.round(candidates[np.argmin(np.linalg.norm(candidates - _room_centre(room), axis=1))], 6)


class _HouseReader:
    """Reads one instruction against the scene's names, blanking each phrase it reads."""

    def __init__(self, instruction: str, scene: Scene) -> None:
        self.scene = scene
        self.text = " " + plain(instruction).replace("_", " ") + " "
        self.understood: list[str] = []
        self.rooms = {room.name: room for room in scene.rooms}
        self.places = {box.name: box for box in (*scene.zones, *scene.rooms, *scene.furniture) if box.name}

    def refuse(self, message: str) -> GoalParseError:
        return GoalParseError(message, self.understood)

    def avoid(self) -> list[Box]:
        """Every place named after an avoid phrase ('without crossing the wet floor and the sofa')."""
        boxes: list[Box] = []
        if not self.places:
            return boxes
        names = _names(list(self.places))
        more = rf"(?:\s*(?:,|\band\b|\bor\b|\bnor\b)\s*(?:the\s+)?(?:{names}))*"
        pattern = re.compile(_AVOID + rf"(?:the\s+)?(?:{names}){more}")
        for match in list(pattern.finditer(self.text)):
            for name, box in self.places.items():
                if re.search(rf"\b{_phrase(name)}\b", match.group(0)):
                    boxes.append(box)
                    self.understood.append(f"avoid the {_spoken(name)}")
            self.text = _blank(self.text, match)
        dangling = re.search(_AVOID + r"(?:the\s+)?([a-z'-]+(?:\s+[a-z'-]+)?)", self.text)
        if dangling:
            places = ", ".join(_spoken(name) for name in self.places)
            raise self.refuse(f"nothing called {dangling.group(1)!r} to avoid in the house; known places: {places}")
        return boxes

    def room_qualifier(self) -> tuple[str | None, str | None]:
        """(room name, 'far' | 'near') from 'in the kitchen' / 'in the far room'; Nones where absent."""
        named = _names(list(self.rooms)) if self.rooms else r"(?!x)x"
        far = "|".join(re.escape(word) for word in FAR_WORDS)
        match = re.search(rf"\b(?:in|inside|within|of)\s+(?:the\s+)?(?:({far})\s+room|({named}))\b", self.text)
        if match is None:
            return None, None
        self.text = _blank(self.text, match)
        if match.group(1):
            self.understood.append(f"in the {match.group(1)} room")
            return None, FAR_WORDS[match.group(1)]
        room = next(name for name in self.rooms if re.fullmatch(_phrase(name), match.group(2)))
        self.understood.append(f"in the {_spoken(room)}")
        return room, None

    def object_words(self) -> tuple[str | None, str | None, str]:
        """(colour, kind, words) of the object named ('the red ball'), Nones where absent."""
        colours = "|".join(COLOUR_WORDS)
        kinds = "|".join(KIND_WORDS)
        match = re.search(rf"\b(?:({colours})\s+)?({kinds})(?:e?s)?\b", self.text)
        if match is not None:
            self.text = _blank(self.text, match)
            colour = COLOUR_WORDS[match.group(1)] if match.group(1) else None
            return colour, KIND_WORDS[match.group(2)], match.group(0)
        match = re.search(rf"\b({colours})\s+([a-z'-]+)", self.text)
        if match is not None:  # a colour and a noun that is no kind of object: 'the green unicorn'
            raise self.refuse(
                f"no {match.group(0)!r} in the house: {match.group(2)!r} is not a kind of object here; known objects: "
                f"{_known_objects(self.scene)}"
            )
        return None, None, ""

    def room_target(self) -> tuple[str | None, str | None]:
        """(room name, 'far' | 'near') of a room named as the target ('go to the kitchen', 'the far room')."""
        named = _names(list(self.rooms)) if self.rooms else r"(?!x)x"
        far = "|".join(re.escape(word) for word in FAR_WORDS)
        match = re.search(rf"\b(?:({far})\s+room|({named}))\b", self.text)
        if match is None:
            return None, None
        self.text = _blank(self.text, match)
        if match.group(1):
            return None, FAR_WORDS[match.group(1)]
        return next(name for name in self.rooms if re.fullmatch(_phrase(name), match.group(2))), None

    def leftover(self) -> list[str]:
        return [w for w in _WORD.findall(self.text) if w not in FILLER_WORDS and w not in HOUSE_FILLER]


def _by_distance(scene: Scene, rooms: list[str], which: str) -> str:
    """Of these rooms, the one whose centre lies farthest from ('far') or nearest to ('near') the agent."""
    if scene.start is None:
        raise GoalParseError(f"the scene does not know where the agent is, so 'the {which} room' means nothing")
    centres = {room.name: _room_centre(room) for room in scene.rooms}
    distance = {name: float(np.linalg.norm(centres[name] - scene.start[:2])) for name in rooms}
    return (max if which == "far" else min)(rooms, key=lambda name: distance[name])


def _pick_object(
    reader: _HouseReader, colour: str | None, kind: str, words: str, room: str | None, which: str | None
) -> SceneObject:
    scene = reader.scene
    candidates = [o for o in scene.objects if o.kind == kind and (colour is None or o.colour == colour)]
    if not candidates:
        raise reader.refuse(f"there is no {words.strip()!r} in the house; known objects: {_known_objects(scene)}")
    where = {o.name: scene.room_of(np.asarray(o.position)) or "no room" for o in candidates}
    if room is not None:
        inside = [o for o in candidates if where[o.name] == room]
        if not inside:
            found = ", ".join(f"{o.label} in the {_spoken(where[o.name])}" for o in candidates)
            raise reader.refuse(f"there is no {words.strip()!r} in the {_spoken(room)}; found: {found}")
        candidates = inside
    if which is not None:
        chosen = _by_distance(scene, sorted({where[o.name] for o in candidates}), which)
        candidates = [o for o in candidates if where[o.name] == chosen]
    if len(candidates) > 1:
        found = ", ".join(f"{o.label} ({o.name}) in the {_spoken(where[o.name])}" for o in candidates)
        raise reader.refuse(f"{words.strip()!r} could mean {len(candidates)} objects: {found}; say which room")
    return candidates[0]


def parse_house_goal(instruction: str, scene: Scene) -> Goal:
    """The Goal a house instruction asks for: an object by colour and kind, or a room, and places to avoid.
    Raises GoalParseError naming the words it could not place and what the house does have."""
    reader = _HouseReader(instruction, scene)
    avoid = reader.avoid()
    room, which = reader.room_qualifier()
    colour, kind, words = reader.object_words()
    kind_name: GoalKind
    if kind is not None:
        obj = _pick_object(reader, colour, kind, words, room, which)
        obj_room = scene.room_of(np.asarray(obj.position))
        label = f"{obj.label} in the {_spoken(obj_room)}" if obj_room else obj.label
        kind_name, position, region = "object", np.asarray(obj.position, dtype=np.float64), None
    else:
        target_room, target_which = reader.room_target()
        target_room = target_room or room
        which = target_which or which
        if target_room is None and which is not None:
            target_room = _by_distance(scene, [r.name for r in scene.rooms], which)
        if target_room is None:
            unknown = " ".join(reader.leftover()) or instruction.strip()
            rooms = ", ".join(_spoken(r.name) for r in scene.rooms)
            raise reader.refuse(
                f"no object or room called {unknown!r} in the house; known objects: {_known_objects(scene)}; "
                f"rooms: {rooms}"
            )
        region = reader.rooms[target_room]
        label, kind_name = f"the {_spoken(target_room)}", "room"
        position = room_target(scene, region, avoid)
    reader.understood.insert(0, f"target {label}")
    leftover = reader.leftover()
    if leftover:
        raise reader.refuse(f"could not read {' '.join(leftover)!r} in {instruction.strip()!r}")
    inside = [box.name for box in avoid if box.contains(position[None])[0]]
    if inside:
        raise reader.refuse(f"the target, {label}, lies in the {_spoken(inside[0])} the instruction says to avoid")
    return Goal(
        instruction=instruction,
        kind=kind_name,
        label=label,
        position=tuple(float(v) for v in position),
        region=region,
        avoid=tuple(avoid),
        constraints=tuple(item for item in reader.understood if item.startswith("avoid")),
        understood=tuple(reader.understood),
    )
