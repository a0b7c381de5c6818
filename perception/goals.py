"""Natural-language goals: "go to the red ball", "reach the top-right room", "go to cell (5, 10)",
"touch the target without entering the left half of the table" -> a Goal in world coordinates.

A rule-based parser is the offline default; an LLM (any perception.chat.ChatModel, e.g. the openai
backend's) answers in the same GoalSpec schema through the same parser and checks. Either way an
instruction with no target, several targets or something the scene lacks raises GoalParseError,
listing what was understood.
"""

from __future__ import annotations

import logging
import re
from typing import Literal, cast

import numpy as np
from langchain_core.output_parsers import PydanticOutputParser
from pydantic import BaseModel, ConfigDict, Field

from perception.chat import ChatModel, ask_structured
from perception.errors import GoalParseError, PerceptionError
from perception.prompts import load_prompt, scene_description
from perception.scene import REGION_NAMES, Box, MazeGrid, RegionName, Scene

log = logging.getLogger(__name__)

MarkerName = Literal["goal", "start"]
GoalKind = Literal["marker", "cell", "position", "region"]
MARKER_LABELS = {"goal": "the goal marker (red ball)", "start": "the agent's start"}
DEFAULT_GOAL_REPROMPTS = 1


class GoalSpec(BaseModel):
    """What an instruction asks for, before it meets a scene. The LLM's answer schema, and what the
    rule-based parser produces."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["marker", "cell", "position", "region", "unclear"] = Field(
        description="which kind of target the instruction names; 'unclear' when none or several"
    )
    marker: MarkerName | None = Field(None, description="for target 'marker': 'goal' (red ball, target) or 'start'")
    cell: tuple[int, int] | None = Field(None, description="for target 'cell': [row, col] of a maze cell")
    position: list[float] | None = Field(None, description="for target 'position': world [x, y] or [x, y, z]")
    region: RegionName | None = Field(None, description="for target 'region': the region to reach")
    avoid_regions: list[RegionName] = Field(default_factory=list, description="regions never to enter")
    avoid_cells: list[tuple[int, int]] = Field(default_factory=list, description="maze cells never to enter")
    note: str = Field("", description="why the target is unclear, if it is")


GOAL_PARSER = PydanticOutputParser(pydantic_object=GoalSpec)


class Goal(BaseModel):
    """A resolved goal: the world position to reach and the boxes to stay out of."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str
    kind: GoalKind
    label: str
    """The target in words, e.g. 'cell (5, 10)'."""
    position: tuple[float, ...]
    """World position of the target, (P,) in the scene's demo dimension."""
    cell: tuple[int, int] | None = None
    """Maze cell of the target (maze scenes)."""
    region: Box | None = None
    """For a region target: the whole region (reaching any of it counts)."""
    avoid: tuple[Box, ...] = ()
    """World boxes the route must stay out of."""
    understood: tuple[str, ...] = ()

    @property
    def target(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# Rule-based parser

_NUMBER = r"-?\d+(?:\.\d+)?"
_AVOID = re.compile(
    r"\b(?:without\s+(?:ever\s+)?(?:entering|going\s+(?:into|through|in)|touching|crossing|passing\s+(?:through|into))"
    r"|avoid(?:ing|s)?|stay(?:ing)?\s+(?:out\s+of|away\s+from|clear\s+of)|keep(?:ing)?\s+(?:out\s+of|away\s+from)"
    r"|(?:do\s+not|don't|never|not)\s+(?:enter|go\s+(?:into|through|in)|cross|touch|pass\s+through))\b",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"[,;]|\.(?:\s|$)|\b(?:and|but|then|while)\b", re.IGNORECASE)
_VERB = re.compile(
    r"\b(?:go|goes|reach|touch|move|navigate|get|head|drive|find|return|visit|walk|travel|bring|steer)\b", re.IGNORECASE
)
_CELL = re.compile(r"\bcell\s*[\[(]?\s*(\d+)\s*,\s*(\d+)\s*[\])]?", re.IGNORECASE)
_BARE_CELL = re.compile(r"\bcell\s+(\d+)\s*,\s*(\d+)", re.IGNORECASE)
_POSITION = re.compile(rf"[\[(]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*({_NUMBER})\s*)?[\])]")
_GOAL_MARKER = re.compile(
    r"\bred\b(?:\s+(?:ball|disc|disk|dot|marker|sphere|circle))?"
    r"|\b(?:goal|target)\b(?!\s+(?:cell|position|point|location|coordinates?|region|room|area))",
    re.IGNORECASE,
)
_AGENT_MARKER = re.compile(r"\bgreen\s+(?:ball|disc|disk|dot|marker|sphere|circle)\b", re.IGNORECASE)
_START_MARKER = re.compile(r"\b(?:start(?:ing)?\s+(?:point|position|cell)|the\s+start|origin)\b", re.IGNORECASE)
_REGION = re.compile(
    r"\b(?:(top|upper|bottom|lower)[\s-]*(left|right)?|(left|right))(?:[\s-]+hand)?\s+"
    r"(?:room|corner|half|side|area|region|part|quadrant|quarter|end)\b"
    r"|\b(?:centre|center|middle)\s+(?:room|area|region|part|square)\b"
    r"|\b(?:centre|center|middle)\s+of\s+the\s+(?:maze|table|map|picture|image|workspace)\b",
    re.IGNORECASE,
)
_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}


def _clauses(text: str) -> list[str]:
    """Split at separators that are not inside brackets: the comma of "cell (5, 10)" stays."""
    pieces, start = [], 0
    for match in _SEPARATOR.finditer(text):
        before = text[: match.start()]
        if before.count("(") + before.count("[") > before.count(")") + before.count("]"):
            continue
        pieces.append(text[start : match.start()])
        start = match.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece.strip()]


def _region_name(match: re.Match[str]) -> str:
    vertical, horizontal, alone = match.group(1), match.group(2), match.group(3)
    if vertical is None and alone is None:
        return "centre"
    if alone is not None:
        return alone.lower()
    name = _VERTICAL[vertical.lower()]
    return f"{name}-{horizontal.lower()}" if horizontal else name


def _entities(text: str) -> list[tuple[str, object]]:
    """Targets named in a piece of text: ('cell', (r, c)), ('position', [..]), ('marker', name),
    ('agent', None), ('region', name), in order of appearance."""
    found: list[tuple[int, str, object]] = []
    for match in _CELL.finditer(text):
        found.append((match.start(), "cell", (int(match.group(1)), int(match.group(2)))))
    # Blank out what is matched, keeping offsets, so that "cell (1, 2)" is not also a position.
    rest = _CELL.sub(lambda m: " " * len(m.group()), text)
    for match in _POSITION.finditer(rest):
        values = tuple(float(v) for v in match.groups() if v is not None)
        found.append((match.start(), "position", values))
    for match in _REGION.finditer(rest):
        found.append((match.start(), "region", _region_name(match)))
    rest = _REGION.sub(lambda m: " " * len(m.group()), rest)
    for match in _GOAL_MARKER.finditer(rest):
        found.append((match.start(), "marker", "goal"))
    for match in _START_MARKER.finditer(rest):
        found.append((match.start(), "marker", "start"))
    for match in _AGENT_MARKER.finditer(rest):
        found.append((match.start(), "agent", None))
    found.sort(key=lambda item: item[0])
    unique: list[tuple[str, object]] = []
    for _, kind, value in found:
        if (kind, value) not in unique:
            unique.append((kind, value))
    return unique


def _describe(kind: str, value: object) -> str:
    if kind == "marker":
        return MARKER_LABELS[str(value)]
    if kind in ("cell", "position"):
        return f"{kind} {value}"
    if kind == "region":
        return f"the {value} region"
    return "the green ball (the agent itself)"


def rule_goal_spec(instruction: str) -> tuple[GoalSpec, list[str]]:
    """Read an instruction with rules; returns the spec and what was understood, in words.

    Raises GoalParseError when no target, several targets, or an avoid phrase with nothing in it.
    """
    targets: list[tuple[str, object]] = []
    avoid: list[tuple[str, object]] = []
    problems: list[str] = []
    in_avoid = False
    # "cell 5, 10" -> "cell (5, 10)", so that the comma does not split the clause.
    for clause in _clauses(_BARE_CELL.sub(r"cell (\1, \2)", instruction)):
        keyword = _AVOID.search(clause)
        if keyword is not None:
            head, tail = clause[: keyword.start()], clause[keyword.end() :]
            targets += _entities(head)
            named = [e for e in _entities(tail) if e[0] in ("region", "cell")]
            if not named:
                problems.append(f"no region or cell to avoid in {tail.strip()!r}")
            avoid += named
            in_avoid = True
        elif in_avoid and _VERB.search(clause) is None:
            # "avoid the left half and the bottom-right corner": the list goes on after 'and'.
            named = [e for e in _entities(clause) if e[0] in ("region", "cell")]
            if named:
                avoid += named
            else:
                targets += _entities(clause)
        else:
            in_avoid = False
            targets += _entities(clause)
    targets = list(dict.fromkeys(targets))
    understood = [f"target: {_describe(k, v)}" for k, v in targets]
    understood += [f"avoid: {_describe(k, v)}" for k, v in avoid]
    if problems:
        raise GoalParseError(f"cannot read the instruction {instruction!r}", understood, problems)
    if not targets:
        raise GoalParseError(
            f"no target found in {instruction!r}; name one, e.g. 'go to the red ball', 'reach the top-right "
            "room', 'go to cell (5, 10)'",
            understood,
        )
    if len(targets) > 1:
        raise GoalParseError(
            f"the instruction {instruction!r} is ambiguous: it names {len(targets)} targets "
            f"({', '.join(_describe(k, v) for k, v in targets)}); name exactly one",
            understood,
        )
    kind, value = targets[0]
    if kind == "agent":
        raise GoalParseError(
            "the green ball is the agent itself, not a place to go; name the red ball, a region or a cell",
            understood,
        )
    spec = GoalSpec.model_validate(
        {
            "target": kind,
            kind: value,
            "avoid_regions": [v for k, v in avoid if k == "region"],
            "avoid_cells": [v for k, v in avoid if k == "cell"],
        }
    )
    return spec, understood


# ----------------------------------------------------------------------------------------------------------
# Resolution against a scene (shared by the rules and the LLM)


def _cell_problem(scene: Scene, cell: tuple[int, int], role: str) -> str | None:
    if scene.grid is None:
        return f"{role} cell {tuple(cell)}: a {scene.task} scene has no cells; name a region or a position"
    rows, cols = scene.grid.shape
    if not (0 <= cell[0] < rows and 0 <= cell[1] < cols):
        return f"{role} cell {tuple(cell)} is outside the {rows}x{cols} maze"
    if role == "target" and scene.grid.walls[cell]:
        return f"target cell {tuple(cell)} is a wall"
    return None


def _cell_box(grid: MazeGrid, cell: tuple[int, int]) -> Box:
    centre = grid.centres(np.array([cell]))[0]
    return Box(low=tuple(centre - 0.5), high=tuple(centre + 0.5), name=f"cell {tuple(cell)}")


def _lift(scene: Scene, point: np.ndarray) -> tuple[float, ...]:
    """A 2-D target onto the scene's demo dimension (the route plane for 3-D scenes)."""
    point = np.asarray(point, dtype=np.float64)
    if scene.pos_dim == 3 and len(point) == 2:
        point = np.r_[point, scene.plane_z]
    return tuple(float(v) for v in point[: scene.pos_dim])


def _cell_of(scene: Scene, position: tuple[float, ...]) -> tuple[int, int] | None:
    if scene.grid is None:
        return None
    row, col = scene.grid.cells_of(np.asarray(position)[None])[0]
    return int(row), int(col)


def _region_target(scene: Scene, box: Box) -> tuple[float, ...] | None:
    """The free cell of the region nearest its centre (maze; None if it has none), else the centre."""
    centre = box.centre[:2]
    if scene.grid is None:
        return _lift(scene, centre)
    free = np.argwhere(~scene.grid.walls)
    centres = scene.grid.centres(free)
    inside = box.contains(centres)
    if not inside.any():
        return None
    candidates = centres[inside]
    return _lift(scene, candidates[int(np.argmin(np.linalg.norm(candidates - centre, axis=1)))])


def _resolve(spec: GoalSpec, scene: Scene, instruction: str, understood: list[str]) -> tuple[Goal | None, list[str]]:
    """The Goal of a spec in this scene, or None and every reason it cannot be used."""
    problems = goal_problems(spec, scene)
    if problems:
        return None, problems
    avoid = [scene.region(name) for name in spec.avoid_regions]
    if scene.grid is not None:
        avoid += [_cell_box(scene.grid, cell) for cell in spec.avoid_cells]
    region = None
    position: tuple[float, ...] | None
    if spec.target == "marker" and spec.marker is not None:
        marker_at = scene.goal if spec.marker == "goal" else scene.start
        position, label = _lift(scene, np.asarray(marker_at)), MARKER_LABELS[spec.marker]
    elif spec.target == "cell" and spec.cell is not None and scene.grid is not None:
        position, label = _lift(scene, scene.grid.centres(np.array([spec.cell]))[0]), f"cell {tuple(spec.cell)}"
    elif spec.target == "position" and spec.position is not None:
        position, label = _lift(scene, np.asarray(spec.position)), f"position {tuple(spec.position)}"
    elif spec.region is not None:
        region = scene.region(spec.region)
        position, label = _region_target(scene, region), f"the {spec.region} region"
        if position is None:
            return None, [f"the {spec.region} region has no free cell"]
    else:  # goal_problems has ruled this out
        return None, [f"target {spec.target!r} lacks its field"]
    inside = [box.name for box in avoid if box.contains(np.asarray(position)[None])[0]]
    if inside:
        problems.append(f"the target ({label}) lies in what the instruction says to avoid ({', '.join(inside)})")
    if scene.start is not None:
        start = np.asarray(_lift(scene, scene.start))[None]
        start_in = [box.name for box in avoid if box.contains(start)[0]]
        if start_in:
            problems.append(f"the agent already stands in what the instruction says to avoid ({', '.join(start_in)})")
    if problems:
        return None, problems
    goal = Goal(
        instruction=instruction,
        kind=cast(GoalKind, spec.target),
        label=label,
        position=position,
        cell=tuple(spec.cell) if spec.cell is not None else _cell_of(scene, position),
        region=region,
        avoid=tuple(avoid),
        understood=tuple(understood),
    )
    return goal, []


def resolve_goal(spec: GoalSpec, scene: Scene, instruction: str, understood: list[str] | None = None) -> Goal:
    """Turn a GoalSpec into world coordinates in this scene; GoalParseError lists what does not fit."""
    understood = list(understood or [])
    goal, problems = _resolve(spec, scene, instruction, understood)
    if goal is None:
        raise GoalParseError(f"cannot follow {instruction!r} in this {scene.task} scene", understood, problems)
    return goal


def goal_problems(spec: GoalSpec, scene: Scene) -> list[str]:
    """Why a GoalSpec cannot be used in this scene; [] when it can."""
    problems: list[str] = []
    if spec.target == "unclear":
        return [f"the instruction names no single target{': ' + spec.note if spec.note else ''}"]
    if spec.target == "marker":
        if spec.marker is None:
            problems.append("target 'marker' needs 'marker': 'goal' or 'start'")
        elif (scene.goal if spec.marker == "goal" else scene.start) is None:
            problems.append(f"the scene does not know where {MARKER_LABELS[spec.marker]} is")
    elif spec.target == "cell":
        if spec.cell is None:
            problems.append("target 'cell' needs 'cell': [row, col]")
        else:
            problem = _cell_problem(scene, spec.cell, "target")
            if problem:
                problems.append(problem)
    elif spec.target == "position":
        if spec.position is None or len(spec.position) not in (2, scene.pos_dim):
            problems.append(f"target 'position' needs {scene.pos_dim} world coordinates, got {spec.position}")
        elif scene.forbidden(np.asarray([_lift(scene, np.asarray(spec.position))]))[0]:
            problems.append(f"target position {tuple(spec.position)} is inside a wall or zone, or outside the map")
    elif spec.region is None:
        problems.append(f"target 'region' needs 'region': one of {list(REGION_NAMES)}")
    for cell in spec.avoid_cells:
        problem = _cell_problem(scene, cell, "avoid")
        if problem:
            problems.append(problem)
    return problems


# ----------------------------------------------------------------------------------------------------------
# Entry point


def parse_goal(
    instruction: str,
    scene: Scene,
    chat: ChatModel | None = None,
    max_reprompts: int = DEFAULT_GOAL_REPROMPTS,
    prompts_dir: str | None = None,
) -> Goal:
    """The Goal an instruction asks for in this scene.

    chat None: the rule-based parser (offline). A ChatModel (e.g. perception.openai_vlm.OpenAIChat):
    the LLM answers in the GoalSpec schema, re-prompted up to max_reprompts times with the reasons its
    answer could not be used. Raises GoalParseError either way when no single usable target is named.
    """
    if not instruction.strip():
        raise GoalParseError("the instruction is empty; name a target, e.g. 'go to the red ball'")
    if chat is None:
        spec, understood = rule_goal_spec(instruction)
        return resolve_goal(spec, scene, instruction, understood)
    messages = load_prompt("goal", prompts_dir).format_messages(
        scene_description=scene_description(scene, prompts_dir),
        regions=", ".join(REGION_NAMES),
        instruction=instruction,
        format_instructions=GOAL_PARSER.get_format_instructions(),
    )
    try:
        spec = ask_structured(
            chat,
            messages,
            GOAL_PARSER,
            lambda answer: _resolve(answer, scene, instruction, [])[1],
            load_prompt("goal_retry", prompts_dir),
            max_reprompts,
            f"goal of {instruction!r}",
        )
    except PerceptionError as error:
        raise GoalParseError(f"the model found no usable goal in {instruction!r}", (), error.reasons) from None
    understood = [f"target ({spec.target}): {spec.marker or spec.cell or spec.position or spec.region}"]
    understood += [f"avoid: the {name} region" for name in spec.avoid_regions]
    understood += [f"avoid: cell {tuple(cell)}" for cell in spec.avoid_cells]
    return resolve_goal(spec, scene, instruction, understood)


def target_for(instruction: str, scene: Scene) -> Goal:
    """The goal a route drawn for `instruction` must reach, for validating it.

    The rules read the instruction; when they find no target at all but the scene knows its goal marker,
    the route is checked against the goal marker (a free-form instruction a model can still follow).
    A target the rules did find but cannot use (a wall cell, two targets) still raises.
    """
    try:
        return parse_goal(instruction, scene)
    except GoalParseError as error:
        named_a_target = any(item.startswith("target") for item in error.understood)
        if scene.goal is None or named_a_target:
            raise
        log.warning("%s; checking the route against the scene's goal marker instead", error)
        return resolve_goal(GoalSpec(target="marker", marker="goal"), scene, instruction, list(error.understood))
