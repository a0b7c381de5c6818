"""Natural-language goals: "go to the red ball", "head to the bottom-right corner", "row 5, column 10",
"take the top route", "touch the target and stay above 0.5 m" -> a Goal in world coordinates.

A rule-based parser is the offline default. It accounts for every word: what it cannot read, it names,
and then it refuses (or hands the sentence to a fallback, e.g. an LLM) instead of guessing. An LLM (any
perception.chat.ChatModel) answers in the same GoalSpec schema through the same checks. Either way an
instruction with no target, several targets, a target it also rules out, or something the scene lacks
raises GoalParseError, listing what was understood.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

import numpy as np
from langchain_core.output_parsers import PydanticOutputParser
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mstt.perception.chat import ChatModel, ask_structured
from mstt.perception.errors import GoalParseError, PerceptionError
from mstt.perception.geometry import Box, MazeGrid
from mstt.perception.goal_routes import RouteError, named_routes
from mstt.perception.goal_types import Goal, GoalKind
from mstt.perception.goal_words import (
    FILLER_PHRASES,
    FILLER_WORDS,
    MOTION_VERBS,
    TYPO_TARGETS,
    clean,
)
from mstt.perception.house_goals import parse_house_goal
from mstt.perception.prompts import load_prompt, scene_description
from mstt.perception.scene import REGION_NAMES, RegionName, Scene

log = logging.getLogger(__name__)

MarkerName = Literal["goal", "start"]
CornerName = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
RouteName = Literal["top", "middle", "bottom", "left", "right"]
TARGET_KINDS: tuple[str, ...] = ("marker", "cell", "position", "region", "corner")
"""The target kinds the rules and the GoalSpec schema name (a house adds 'object' and 'room': house_goals)."""
MARKER_LABELS = {"goal": "the goal marker (red ball)", "start": "the agent's start"}
DEFAULT_GOAL_REPROMPTS = 1
ALL_ZONES = "all"
"""avoid_zones entry: every forbidden zone of the scene ('the zone', 'the box', 'the obstacle')."""
WALLS = "walls"
"""avoid_zones entry: 'the walls': the maze's walls (always avoided), a Fetch scene's wall-like zones."""
CORNER_SHARE = 1.0 / 3.0
"""In a scene without cells, a corner is this share of the area's span along both picture axes."""
MARKER_CLEARANCE = 0.05
"""World half-size of the box kept clear around a marker in a scene without cells (FetchReach counts
the target reached within 0.05 m)."""


class GoalSpec(BaseModel):
    """What an instruction asks for, before it meets a scene. The LLM's answer schema, and what the
    rule-based parser produces."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["marker", "cell", "position", "region", "corner", "unclear"] = Field(
        description="which kind of target the instruction names; 'unclear' when none or several"
    )
    marker: MarkerName | None = Field(None, description="for target 'marker': 'goal' (red ball, target) or 'start'")
    cell: tuple[int, int] | None = Field(None, description="for target 'cell': [row, col] of a maze cell")
    position: list[float] | None = Field(None, description="for target 'position': world [x, y] or [x, y, z]")
    region: RegionName | None = Field(None, description="for target 'region': the half, quadrant or centre to reach")
    corner: CornerName | None = Field(None, description="for target 'corner': the corner of the map to reach")
    route: RouteName | None = Field(
        None, description="the route the instruction says to take from the agent to the target (maze), if any"
    )
    avoid_regions: list[RegionName] = Field(default_factory=list, description="regions never to enter")
    avoid_cells: list[tuple[int, int]] = Field(default_factory=list, description="maze cells never to enter")
    avoid_corners: list[CornerName] = Field(default_factory=list, description="corners never to enter")
    avoid_markers: list[MarkerName] = Field(default_factory=list, description="markers never to touch")
    avoid_zones: list[str] = Field(
        default_factory=list, description="forbidden zones named to avoid: 'zone 1', ..., 'all' or 'walls'"
    )
    min_height: float | None = Field(None, description="world z the route must stay at or above (3-D scenes)")
    max_height: float | None = Field(None, description="world z the route must stay at or below (3-D scenes)")
    note: str = Field("", description="why the target is unclear, if it is")


GOAL_PARSER = PydanticOutputParser(pydantic_object=GoalSpec)


class GoalNotUnderstood(GoalParseError):
    """The rules could not read part of the instruction; a fallback (e.g. an LLM) may.

    ``partial`` holds what the rules did read (its avoid lists and heights must survive any fallback)."""

    def __init__(
        self,
        message: str,
        understood: Sequence[str] = (),
        reasons: Sequence[str] = (),
        partial: GoalReading | None = None,
    ) -> None:
        super().__init__(message, understood, reasons)
        self.partial = partial


class GoalFallback(Protocol):
    """Reads what the rules cannot: (instruction, scene) -> a GoalSpec, checked like the rules' own."""

    def __call__(self, instruction: str, scene: Scene) -> GoalSpec: ...


@dataclass(frozen=True)
class GoalReading:
    """What the rules read in an instruction: the spec, the places it rules out as targets ('not the red
    ball'), and everything understood, in words."""

    spec: GoalSpec
    excluded: tuple[GoalSpec, ...] = ()
    understood: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------------------
# Rule-based reading: every phrase below is consumed (blanked) when read; words left over must be filler.

_NUMBER = r"-?\d+(?:\.\d+)?"
_UNIT = r"(?:(?:m|cm|mm)\b)"
_UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001, None: 1.0}
_SUBJECT = r"(?:(?:the|your|its)\s+)?(?:gripper|arm|hand|end-effector|tool|robot|fingers?)\s+|it\s+|yourself\s+"
_LEAD = (
    r"(?:stay(?:ing|s)?|keep(?:ing|s)?|remain(?:ing|s)?|hold(?:ing|s)?|be|being|move|moving|fly(?:ing)?|"
    r"travel(?:l?ing)?|go(?:ing)?|operate|operating|work(?:ing)?)"
)
_NEG = r"(?:never|don't|do\s+not|must\s+not|mustn't|should\s+not|shouldn't|not|no|without)"
_DOWN_VERB = (
    r"(?:go(?:ing)?|drop(?:ping)?|dip(?:ping)?|sink(?:ing)?|descend(?:ing)?|fall(?:ing)?|move|moving|get(?:ting)?|"
    r"come|coming|be|being|rise|rising|climb(?:ing)?|lower(?:ing)?|raise|raising|fly(?:ing)?)"
)
_ABOVE = r"(?:above|over|higher\s+than|more\s+than|at\s+least)"
_BELOW = r"(?:below|under(?:neath)?|beneath|lower\s+than|less\s+than|at\s+most)"
_Z = r"(?:(?:a\s+|the\s+)?(?:height|altitude|z)\s+(?:of\s+)?)?(?:z\s*=?\s*)?"
_HEIGHT_TAIL = r"(?:\s+(?:high|up|in\s+height|height|of\s+height))?"
_RELATIVE_HEIGHT = re.compile(
    rf"\b(?:{_LEAD}\s+)?(?:{_SUBJECT})?(?:at\s+least\s+|at\s+most\s+)?{_NUMBER}\s*{_UNIT}?\s*"
    r"(?:above|over|below|under|from|off)\s+(?:the\s+)?(?:table|floor|ground|surface|zone|box)\b"
)
_HEIGHT_BETWEEN = re.compile(
    rf"\b(?:{_LEAD}\s+)?(?:{_SUBJECT})?{_Z}between\s+({_NUMBER})\s*({_UNIT})?\s*(?:and|to|-)\s*({_NUMBER})\s*({_UNIT})?"
    rf"{_HEIGHT_TAIL}"
)
_HEIGHT_NEGATED = re.compile(
    rf"\b{_NEG}\s+(?:ever\s+)?(?:{_SUBJECT})?(?:{_DOWN_VERB}\s+)?(?:{_SUBJECT})?(?:the\s+gripper\s+)?{_Z}"
    rf"({_ABOVE}|{_BELOW})\s+{_Z}({_NUMBER})\s*({_UNIT})?{_HEIGHT_TAIL}"
)
_HEIGHT_PLAIN = re.compile(
    rf"\b(?:{_LEAD}\s+)?(?:{_SUBJECT})?(?:{_LEAD}\s+)?(?:at\s+)?{_Z}({_ABOVE}|{_BELOW}|>=?|<=?)\s*{_Z}"
    rf"({_NUMBER})\s*({_UNIT})?{_HEIGHT_TAIL}"
)
_HEIGHT_OR = re.compile(rf"\b{_Z}({_NUMBER})\s*({_UNIT})?\s+or\s+(higher|more|above|lower|less|below)\b")

_SIDE_NOUN = r"(?:half|side|area|region|part|section|portion|end|room|wing)"
_QUADRANT_NOUN = r"(?:room|quadrant|quarter|area|region|part|section|portion)"
_MAP_NOUN = r"(?:maze|map|grid|board|table|picture|image|workspace|scene|world|arena|floor|screen)"
_ROUTE_NOUN = r"(?:route|corridor|path|passage|passageway|way|hallway|lane|branch|loop|road|track|tunnel)"
_ZONE_NOUN = r"(?:zone|box|obstacle|barrier|block|cube)"
_MARKER_NOUN = r"(?:ball|disc|disk|dot|marker|sphere|circle|target|goal|point|spot|one|object|thing)"

# (kind, pattern, value of a match); applied in this order, each on what the previous ones left.
_PLACE_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], object]], ...] = (
    (
        "problem",
        re.compile(
            rf"\b(?:over|around|above|under|beneath|below|past|beside|behind|round|across)\s+(?:the\s+)?"
            rf"(?:forbidden\s+)?{_ZONE_NOUN}e?s?\b"
        ),
        lambda m: (
            f"{m.group().strip()!r}: a way past a zone (over, around) is not something a goal can hold; "
            "name the target and what to avoid"
        ),
    ),
    (
        "route",
        re.compile(
            rf"\b(?:(via|through|along|by|using|use|take|taking|follow|following|down|up|across)\s+)?(?:the\s+)?"
            rf"(top|bottom|middle|centre|left|right)\s+{_ROUTE_NOUN}\b"
        ),
        lambda m: ("middle" if m.group(2) == "centre" else m.group(2), m.group(1) is not None),
    ),
    (
        "cell",
        re.compile(r"\b(?:(?:the\s+)?(?:goal|target)\s+)?cell\s*[\[(]\s*(\d{1,9})\s*,\s*(\d{1,9})\s*[\])]"),
        lambda m: (int(m.group(1)), int(m.group(2))),
    ),
    (
        "position",
        re.compile(
            r"\b(?:(?:the\s+)?(?:goal|target)\s+)?(position|point|location|coordinates?|coords?|spot|place)\s*"
            rf"(?:at\s+)?[\[(]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*({_NUMBER})\s*)?[\])]"
        ),
        lambda m: tuple(float(v) for v in m.groups()[1:] if v is not None),
    ),
    (
        "bare-position",
        re.compile(rf"[\[(]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*({_NUMBER})\s*)?[\])]"),
        lambda m: tuple(float(v) for v in m.groups() if v is not None),
    ),
    (
        "corner",
        re.compile(
            r"\b(?:the\s+)?(?:very\s+)?(?:(top|bottom)-(left|right)\s+corner|corner\s+(?:at\s+|in\s+|on\s+|of\s+)?"
            r"(?:the\s+)?(top|bottom)-(left|right))\b"
        ),
        lambda m: "-".join(g for g in m.groups() if g is not None),
    ),
    (
        "region",
        re.compile(
            rf"\b(?:the\s+)?(?:(top-left|top-right|bottom-left|bottom-right)\s+{_QUADRANT_NOUN}"
            rf"|(top|bottom|left|right)\s+{_SIDE_NOUN}"
            rf"|{_QUADRANT_NOUN}\s+(top-left|top-right|bottom-left|bottom-right)"
            rf"|{_SIDE_NOUN}\s+(top|bottom|left|right)"
            rf"|(top-left|top-right|bottom-left|bottom-right|top|bottom|left|right)\s+of\s+the\s+{_MAP_NOUN})\b"
        ),
        lambda m: next(g for g in m.groups() if g is not None),
    ),
    (
        "region",
        re.compile(
            r"\b(?:the\s+)?(?:centre|middle)(?:\s+(?:room|area|region|part|square|section))?"
            rf"(?:\s+of\s+the\s+{_MAP_NOUN})?\b"
        ),
        lambda m: "centre",
    ),
    (
        "zone",
        re.compile(
            rf"\b(?:the\s+|a\s+|any\s+)?(?:forbidden\s+|restricted\s+|no-go\s+|keep-out\s+)?{_ZONE_NOUN}(?:e?s)?"
            r"(?:\s+(\d+))?\b"
        ),
        lambda m: f"zone {int(m.group(1))}" if m.group(1) else ALL_ZONES,
    ),
    ("zone", re.compile(r"\b(?:the\s+|any\s+)?walls?\b"), lambda m: WALLS),
    (
        "marker",
        re.compile(
            r"\b(?:the\s+|your\s+|its\s+|my\s+)?(?:start(?:ing)?(?:\s+(?:point|position|cell|square|location|place|"
            r"spot|pose|marker))?|beginning|initial\s+(?:position|cell|point|location|pose|spot)|spawn(?:\s+point)?|"
            r"home(?:\s+(?:position|pose|cell))?)\b"
            r"|\b(?:the\s+(?:place|spot|point|cell|position)\s+)?where\s+(?:you|it|the\s+agent|the\s+robot|we|i)\s+"
            r"(?:started|start|began|begin)(?:\s+(?:from|off))?\b"
        ),
        lambda m: "start",
    ),
    (
        "agent",
        re.compile(r"\b(?:the\s+)?green(?:\s+(?:ball|disc|disk|dot|marker|sphere|circle|one))?\b"),
        lambda m: None,
    ),
    (
        "marker",
        re.compile(
            rf"\b(?:the\s+|your\s+)?(?:red(?:\s+{_MARKER_NOUN})?"
            r"|(?:goal|target)(?:\s+(?:marker|position|point|location|cell|square|spot|ball|sphere))?"
            r"|finish(?:ing)?(?:\s+(?:line|point|cell|position|spot))?|destination|marker|endpoint|objective"
            r"|end(?!-)(?:\s+(?:point|goal|position))?)\b"
        ),
        lambda m: "goal",
    ),
)
_AVOID_KEYWORD = re.compile(
    r"\b(?:avoid(?:ing|s)?"
    r"|(?:stay(?:ing|s)?|keep(?:ing|s)?|remain(?:ing|s)?)\s+(?:out\s+of|away\s+from|clear\s+of|off|outside(?:\s+of)?)"
    r"|steer(?:ing)?\s+clear\s+of"
    r"|(?:without|never|not)\s+(?:ever\s+)?(?:entering|going\s+(?:into|through|in|to|across)|touching|crossing|"
    r"passing(?:\s+(?:through|into|by|over))?|visiting|hitting|driving\s+(?:into|through)|stepping\s+(?:into|on)|"
    r"moving\s+(?:into|through)|getting\s+into|bumping\s+into|running\s+into)"
    r"|(?:do\s+not|don't|never|not|must\s+not|mustn't|should\s+not|shouldn't|no)\s+(?:ever\s+)?(?:enter|"
    r"go\s+(?:into|through|in|to|across)|cross|touch|visit|pass(?:\s+(?:through|into|by|over))?|hit|"
    r"drive\s+(?:into|through)|step\s+(?:into|on)|move\s+(?:into|through|to)|get\s+into|bump\s+into|"
    r"run\s+into|come\s+into)"
    r"|not\s+(?:through|via|into|across)"
    r"|no\s+(?:entering|going\s+(?:into|through)))\b"
)
_EXCLUDE_KEYWORD = re.compile(
    r"\b(?:not(?:\s+to)?|rather\s+than|instead\s+of|other\s+than|except(?:\s+for)?|apart\s+from|anywhere-except)\b"
)
RETURN_WORDS = frozenset({"back", "return", "returning"})
"""A step with one of these words and no place goes back to the start ('and then come back')."""
STAY_VERBS = frozenset({"stop", "park", "settle", "land", "arrive", "arriving", "wait"})
"""Steps that end where the target is ('then stop'): they add no second goal."""
_NOT_A_HEIGHT = re.compile(r"\s*(?:steps?|cells?|squares?|seconds?|moves?|times?|actions?|tries|attempts?|tiles?)\b")
"""A number followed by one of these ('in under 50 steps') is not a height."""
_SEPARATOR = re.compile(r"[,;!?]|\.(?:\s|$)|\b(?:and|but|then|or|nor|while|whilst)\b")
_CONTINUES_LIST = {",", "and", "or", "nor"}
_TOKEN = re.compile(r"[a-z0-9'][a-z0-9'.-]*")
_FILLER = [re.compile(p) for p in FILLER_PHRASES]
KNOWN_WORDS: frozenset[str] = (
    FILLER_WORDS
    | TYPO_TARGETS
    | frozenset(
        """not no never don't do without except rather than other apart anywhere via along by using use follow
    corridor path passage way lane branch loop road track tunnel top bottom left right middle centre centre
    half side area region part section portion end room wing quadrant quarter corner cell position point
    location coordinates spot place zone box obstacle barrier block cube walls wall start starting beginning
    initial spawn home where started began begin green red ball disc disk dot marker sphere circle finish
    destination endpoint objective goal target above below over under beneath higher lower less more least
    most height altitude high between and or but then while stay keep remain out clear off outside steer
    enter entering cross crossing touch visit pass hit step move get bump run come must should m cm mm
    staying stays keeping keeps remaining remains holding holds moving flying travelling traveling going
    dropping dipping sinking descending falling getting coming being rising climbing lowering raising avoids
    touching passing visiting hitting driving stepping bumping running steering taking following operating
    working reaching heading navigating drop dip sink descend fall rise climb raise fly hold operate work""".split()
    )
)
"""Every word the rules read; never 'corrected' as a typo."""


def _word(token: str) -> str:
    """A leftover token as a word: no stray dots, dashes or quotes, no possessive 's."""
    word = token.strip(".-'")
    return word[:-2] if word.endswith("'s") else ("" if word == "s" else word)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _clauses(text: str) -> list[tuple[str, int, int]]:
    """(separator before, start, end) of each clause; separators inside brackets do not split."""
    pieces, start, separator = [], 0, ""
    for match in _SEPARATOR.finditer(text):
        before = text[: match.start()]
        if before.count("(") + before.count("[") > before.count(")") + before.count("]"):
            continue
        pieces.append((separator, start, match.start()))
        start, separator = match.end(), match.group().strip() or ","
    pieces.append((separator, start, len(text)))
    return [piece for piece in pieces if text[piece[1] : piece[2]].strip()]


def _height_value(number: str, unit: str | None) -> float:
    return float(number) * _UNIT_SCALE[unit.strip() if unit else None]


def _heights(text: str) -> tuple[str, list[tuple[str, float]], list[str]]:
    """Height limits read and blanked: [('min' | 'max', world z)], and problems (relative heights)."""
    limits: list[tuple[str, float]] = []
    problems: list[str] = []
    for match in list(_RELATIVE_HEIGHT.finditer(text)):
        problems.append(
            f"{match.group().strip()!r}: heights above the table or a zone are not known to the scene; give a "
            "world height, e.g. 'stay above 0.5 m'"
        )
        text = _blank(text, *match.span())
    for match in list(_HEIGHT_BETWEEN.finditer(text)):
        low, low_unit, high, high_unit = match.groups()
        limits += [("min", _height_value(low, low_unit or high_unit)), ("max", _height_value(high, high_unit))]
        text = _blank(text, *match.span())
    for match in list(_HEIGHT_NEGATED.finditer(text)):
        if _NOT_A_HEIGHT.match(text, match.end()):
            continue
        word, number, unit = match.groups()
        below = re.fullmatch(_BELOW, word) is not None
        limits.append(("min" if below else "max", _height_value(number, unit)))
        text = _blank(text, *match.span())
    for match in list(_HEIGHT_PLAIN.finditer(text)):
        if _NOT_A_HEIGHT.match(text, match.end()):
            continue
        word, number, unit = match.groups()
        above = re.fullmatch(_ABOVE, word) is not None or word.startswith(">")
        limits.append(("min" if above else "max", _height_value(number, unit)))
        text = _blank(text, *match.span())
    for match in list(_HEIGHT_OR.finditer(text)):
        number, unit, word = match.groups()
        limits.append(("min" if word in ("higher", "more", "above") else "max", _height_value(number, unit)))
        text = _blank(text, *match.span())
    return text, limits, problems


def _places(text: str) -> tuple[str, list[tuple[int, str, object]]]:
    """Places named in a clause, in order of appearance, and the clause with them blanked."""
    found: list[tuple[int, str, object]] = []
    for kind, pattern, value in _PLACE_PATTERNS:
        for match in list(pattern.finditer(text)):
            if not match.group().strip():
                continue
            found.append((match.start(), kind, value(match)))
            text = _blank(text, *match.span())
    found.sort(key=lambda item: item[0])
    return text, found


def describe_place(kind: str, value: object) -> str:
    """A place as 'understood' names it, e.g. 'cell (5, 10)', 'the top-right corner'."""
    if kind == "marker":
        return MARKER_LABELS[str(value)]
    if kind == "cell":
        return f"cell {tuple(cast(tuple[int, int], value))}"
    if kind == "position":
        return f"position {tuple(cast(tuple[float, ...], value))}"
    if kind == "region":
        return f"the {value} region"
    if kind == "corner":
        return f"the {value} corner"
    if kind == "zone":
        return {ALL_ZONES: "the forbidden zones", WALLS: "the walls"}.get(str(value), str(value))
    if kind == "route":
        return f"the {value} route"
    return "the green ball (the agent itself)"


def _height_words(kind: str, value: float) -> str:
    return f"stay at or {'above' if kind == 'min' else 'below'} z = {value:.2f}"


@dataclass
class _Reader:
    """Collects what each clause of one instruction names, and with which role."""

    targets: list[tuple[str, object]] = field(default_factory=list)
    avoid: list[tuple[str, object]] = field(default_factory=list)
    excluded: list[tuple[str, object]] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    heights: list[tuple[str, float]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    """Phrases that lead to nothing read ('without entering the blue'): a fallback may read them."""
    problems: list[str] = field(default_factory=list)

    def add(self, role: str, kind: str, value: object) -> None:
        if kind == "problem":
            self.problems.append(str(value))
        elif kind == "route":
            name, taken = cast(tuple[str, bool], value)
            if role != "target":
                self.problems.append(f"avoiding or ruling out the {name} route is not supported; name one to take")
            elif not taken:
                self.problems.append(
                    f"the {name} route is a way, not a place; say where to go, e.g. 'take the {name} route to the goal'"
                )
            elif name not in self.routes:
                self.routes.append(name)
        elif kind == "bare-position":
            self.problems.append(
                f"{tuple(cast(tuple[float, ...], value))} could be a cell or a world position; say 'cell (row, col)' "
                "or 'position (x, y)'"
            )
        elif role == "avoid":
            if kind == "agent":
                self.problems.append("the green ball is the agent itself; it cannot be avoided")
            elif kind == "position":
                self.problems.append(f"{describe_place(kind, value)} is a point; name a cell or a region to avoid")
            elif (kind, value) not in self.avoid:
                self.avoid.append((kind, value))
        elif role == "exclude":
            if (kind, value) not in self.excluded:
                self.excluded.append((kind, value))
        elif (kind, value) not in self.targets:
            self.targets.append((kind, value))

    def read_clause(self, clause: str, role_before: str | None) -> str:
        """Read one clause; returns the role its last place had (a list of places to avoid goes on)."""
        original = clause
        clause, places = _places(clause)
        keywords: list[tuple[int, str]] = []
        for pattern, role in ((_AVOID_KEYWORD, "avoid"), (_EXCLUDE_KEYWORD, "exclude")):
            for match in list(pattern.finditer(clause)):
                keywords.append((match.end(), role))
                clause = _blank(clause, *match.span())
        keywords.sort()
        for pattern in _FILLER:
            clause = pattern.sub(lambda m: " " * len(m.group()), clause)
        self.unknown += [word for word in map(_word, _TOKEN.findall(clause)) if word and word not in FILLER_WORDS]
        has_verb = any(word in MOTION_VERBS for word in _TOKEN.findall(original))
        default = role_before if role_before in ("avoid", "exclude") and not has_verb and not keywords else "target"
        role = default
        for offset, kind, value in places:
            role = default
            for end, keyword_role in keywords:
                if end <= offset:
                    role = keyword_role
            self.add(role, kind, value)
        for end, keyword_role in keywords:
            if not any(offset >= end for offset, _, _ in places):
                what = "avoid" if keyword_role == "avoid" else "rule out"
                self.gaps.append(f"no region or cell to {what} in {original[end:].strip()!r}")
        if has_verb and not places and not keywords:
            self._step_without_place(original)
        return keywords[-1][1] if keywords and not places else (role if places else default)

    def _step_without_place(self, clause: str) -> None:
        """'... and then come back' returns to the start; any other step after the target ('and then go on')
        asks for more than one goal holds."""
        words = set(_TOKEN.findall(clause))
        if words & RETURN_WORDS:
            self.add("target", "marker", "start")
        elif self.targets and not words & (STAY_VERBS | {"it"}):
            self.problems.append(f"{clause.strip()!r} asks for another step without saying where; name one target")

    def understood(self) -> list[str]:
        said = [f"target: {describe_place(k, v)}" for k, v in self.targets]
        said += [f"avoid: {describe_place(k, v)}" for k, v in self.avoid]
        said += [f"not the target: {describe_place(k, v)}" for k, v in self.excluded]
        said += [f"route: the {name} route" for name in self.routes]
        said += [f"constraint: {_height_words(k, v)}" for k, v in self.heights]
        return said


def _spec(target: tuple[str, object] | None, reader: _Reader) -> GoalSpec:
    """The GoalSpec of what was read (target 'unclear' when there is no single one)."""
    fields: dict[str, object] = {"target": "unclear"}
    if target is not None:
        kind, value = target
        fields = {"target": kind, kind: value}
    for kind, name in (
        ("region", "avoid_regions"),
        ("cell", "avoid_cells"),
        ("corner", "avoid_corners"),
        ("marker", "avoid_markers"),
        ("zone", "avoid_zones"),
    ):
        fields[name] = [v for k, v in reader.avoid if k == kind]
    mins = [v for k, v in reader.heights if k == "min"]
    maxes = [v for k, v in reader.heights if k == "max"]
    fields["min_height"] = max(mins) if mins else None
    fields["max_height"] = min(maxes) if maxes else None
    fields["route"] = reader.routes[0] if len(reader.routes) == 1 else None
    return GoalSpec.model_validate(fields)


def read_goal(instruction: str) -> GoalReading:
    """Read an instruction with rules: its GoalSpec, the places it rules out, and what was understood.

    Raises GoalNotUnderstood when words are left that the rules cannot read (a fallback may), and
    GoalParseError when what was read has no single usable target (no target, several, the agent, a
    target also ruled out, a route twice named).
    """
    cleaned = clean(instruction, KNOWN_WORDS)
    text, heights, height_problems = _heights(cleaned.text)
    reader = _Reader(heights=heights, problems=height_problems)
    role: str | None = None
    for separator, start, end in _clauses(text):
        continues = separator in _CONTINUES_LIST
        role = reader.read_clause(text[start:end], role if continues else None)
    understood = list(cleaned.notes) + reader.understood()
    problems = list(reader.problems)
    implied = False
    if not reader.targets and reader.routes and ("marker", "goal") not in reader.avoid + reader.excluded:
        reader.targets.append(("marker", "goal"))  # 'take the top route': routes lead to the goal
        understood.append("target: the goal marker (red ball), where the named route leads")
        implied = True
    for kind, value in reader.targets:
        if kind == "agent":
            problems.append(
                "the green ball is the agent itself, not a place to go; name the red ball, a region or a cell"
            )
        elif kind == "zone":
            problems.append(f"{describe_place(kind, value)} cannot be a target: zones and walls are never entered")
        elif (kind, value) in reader.excluded or (kind, value) in reader.avoid:
            problems.append(f"the instruction both asks for {describe_place(kind, value)} and rules it out")
    if len(reader.routes) > 1:
        problems.append(f"several routes are named ({', '.join(reader.routes)}); name one")
    unknown = list(dict.fromkeys(reader.unknown))
    not_read = reader.gaps + ([f"not understood: {', '.join(repr(w) for w in unknown)}"] if unknown else [])
    usable = [(k, v) for k, v in reader.targets if k in TARGET_KINDS]
    partial = GoalReading(
        spec=_spec(usable[0] if len(usable) == 1 and not implied else None, reader),
        excluded=tuple(_spec((k, v), _Reader()) for k, v in reader.excluded if k in TARGET_KINDS),
        understood=tuple(understood),
    )
    if not reader.targets:
        message = f"no target found in {instruction!r}"
        if reader.avoid or reader.excluded:
            message += "; it says where not to go but not where to go"
        message += "; name one, e.g. 'go to the red ball', 'reach the top-right room', 'go to cell (5, 10)'"
        if not_read:
            raise GoalNotUnderstood(message, understood, problems + not_read, partial)
        raise GoalParseError(message, understood, problems)
    if len(reader.targets) > 1:
        raise GoalParseError(
            f"the instruction {instruction!r} is ambiguous: it names {len(reader.targets)} targets "
            f"({', '.join(describe_place(k, v) for k, v in reader.targets)}); name exactly one",
            understood,
            problems + not_read,
        )
    if problems:
        raise GoalParseError(f"cannot follow {instruction!r} as read", understood, problems + not_read)
    if not_read:
        raise GoalNotUnderstood(
            f"could not read all of {instruction!r}; rephrase with the words understood, or configure a fallback",
            understood,
            not_read,
            partial,
        )
    return GoalReading(spec=_spec(reader.targets[0], reader), excluded=partial.excluded, understood=tuple(understood))


def rule_goal_spec(instruction: str) -> tuple[GoalSpec, list[str]]:
    """read_goal's spec and what was understood (for callers that need no exclusions)."""
    reading = read_goal(instruction)
    return reading.spec, list(reading.understood)


# ----------------------------------------------------------------------------------------------------------
# Resolution against a scene (shared by the rules, a fallback and the LLM)


def _cell_problem(scene: Scene, cell: tuple[int, int], role: str) -> str | None:
    if scene.grid is None:
        return f"{role} cell {tuple(cell)}: a {scene.task} scene has no cells; name a region or a position"
    rows, cols = scene.grid.shape
    if not (0 <= cell[0] < rows and 0 <= cell[1] < cols):
        return f"{role} cell {tuple(cell)} is outside the {rows}x{cols} maze"
    if role == "target" and scene.grid.walls[cell]:
        return f"target cell {tuple(cell)} is a wall"
    return None


def _cell_box(grid: MazeGrid, cell: tuple[int, int], name: str = "") -> Box:
    centre = grid.centres(np.array([cell]))[0]
    return Box(low=tuple(centre - 0.5), high=tuple(centre + 0.5), name=name or f"cell {tuple(cell)}")


def _lift(scene: Scene, point: np.ndarray) -> tuple[float, ...]:
    """A 2-D target onto the scene's demo dimension (the route plane for 3-D scenes)."""
    point = np.asarray(point, dtype=np.float64)
    if scene.pos_dim == 3 and len(point) == 2:
        point = np.r_[point, scene.plane_z]
    return tuple(float(v) for v in point[: scene.pos_dim])


def _cell_of(scene: Scene, position: Sequence[float]) -> tuple[int, int] | None:
    if scene.grid is None:
        return None
    row, col = scene.grid.cells_of(np.asarray(position)[None])[0]
    return int(row), int(col)


def _nearest_free(scene: Scene, box: Box, point: np.ndarray) -> tuple[int, int] | None:
    """The free maze cell inside `box` whose centre is nearest `point`; None if the box has none."""
    grid = cast(MazeGrid, scene.grid)
    free = np.argwhere(~grid.walls)
    centres = grid.centres(free)
    inside = box.contains(centres)
    if not inside.any():
        return None
    nearest = np.argmin(np.linalg.norm(centres[inside] - point[:2], axis=1))
    return int(free[inside][nearest][0]), int(free[inside][nearest][1])


def _region_target(scene: Scene, box: Box) -> tuple[float, ...] | None:
    """The free cell of the region nearest its centre (maze; None if it has none), else the centre."""
    if scene.grid is None:
        return _lift(scene, box.centre[:2])
    cell = _nearest_free(scene, box, box.centre)
    return None if cell is None else _lift(scene, scene.grid.centres(np.array([cell]))[0])


def _corner(scene: Scene, name: str) -> tuple[tuple[float, ...], Box] | None:
    """Target and box of a corner: the free cell nearest the corner (maze), or the corner CORNER_SHARE of
    the area (other scenes). None when the maze has no free cell in that quarter."""
    quarter = scene.region(name)
    low, high = np.array(scene.extent.low, dtype=float), np.array(scene.extent.high, dtype=float)
    vertex = np.array([quarter.low[a] if quarter.low[a] == low[a] else quarter.high[a] for a in range(2)])
    if scene.grid is not None:
        cell = _nearest_free(scene, quarter, vertex)
        if cell is None:
            return None
        return _lift(scene, scene.grid.centres(np.array([cell]))[0]), _cell_box(scene.grid, cell, f"{name} corner")
    box_low, box_high = low.copy(), high.copy()
    for axis in range(2):
        reach = (high[axis] - low[axis]) * CORNER_SHARE
        box_low[axis], box_high[axis] = (
            (vertex[axis], vertex[axis] + reach) if vertex[axis] == low[axis] else (vertex[axis] - reach, vertex[axis])
        )
    box = Box(low=tuple(box_low), high=tuple(box_high), name=f"{name} corner")
    return _lift(scene, box.centre[:2]), box


def _marker_at(scene: Scene, marker: str) -> np.ndarray | None:
    return scene.goal if marker == "goal" else scene.start


def _marker_box(scene: Scene, marker: str) -> Box:
    at = np.asarray(_marker_at(scene, marker), dtype=np.float64)
    name = f"{marker} marker"
    if scene.grid is not None:
        return _cell_box(scene.grid, cast(tuple[int, int], _cell_of(scene, at)), name)
    point = np.asarray(_lift(scene, at[:2]) if len(at) == 2 else at)
    return Box(low=tuple(point - MARKER_CLEARANCE), high=tuple(point + MARKER_CLEARANCE), name=name)


def _zone_boxes(scene: Scene, name: str) -> list[Box]:
    if name == WALLS and scene.grid is not None:
        return []  # maze walls are part of the map and always avoided
    if name in (ALL_ZONES, WALLS):
        return list(scene.zones)
    return [zone for zone in scene.zones if zone.name == name]


def _height_boxes(spec: GoalSpec, scene: Scene) -> list[Box]:
    low, high = scene.extent.low, scene.extent.high
    boxes = []
    if spec.min_height is not None:
        boxes.append(Box(low=low, high=(*high[:2], spec.min_height), name=f"below z = {spec.min_height:.2f}"))
    if spec.max_height is not None:
        boxes.append(Box(low=(*low[:2], spec.max_height), high=high, name=f"above z = {spec.max_height:.2f}"))
    return boxes


def goal_problems(spec: GoalSpec, scene: Scene) -> list[str]:
    """Why a GoalSpec cannot be used in this scene; [] when it can."""
    problems: list[str] = []
    if spec.target == "unclear":
        return [f"the instruction names no single target{': ' + spec.note if spec.note else ''}"]
    if spec.target == "marker":
        if spec.marker is None:
            problems.append("target 'marker' needs 'marker': 'goal' or 'start'")
        elif _marker_at(scene, spec.marker) is None:
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
        elif not np.all(np.isfinite(spec.position)):
            problems.append(f"target position {tuple(spec.position)} is not a finite point")
        elif scene.forbidden(np.asarray([_lift(scene, np.asarray(spec.position))]))[0]:
            problems.append(f"target position {tuple(spec.position)} is inside a wall or zone, or outside the map")
    elif spec.target == "corner":
        if spec.corner is None:
            problems.append("target 'corner' needs 'corner': one of top-left, top-right, bottom-left, bottom-right")
    elif spec.region is None:
        problems.append(f"target 'region' needs 'region': one of {list(REGION_NAMES)}")
    for cell in spec.avoid_cells:
        problem = _cell_problem(scene, cell, "avoid")
        if problem:
            problems.append(problem)
    for marker in spec.avoid_markers:
        if _marker_at(scene, marker) is None:
            problems.append(f"the scene does not know where {MARKER_LABELS[marker]} is, so it cannot be avoided")
    for zone in spec.avoid_zones:
        if zone == WALLS and scene.grid is not None:
            continue
        if not _zone_boxes(scene, zone):
            known = [z.name for z in scene.zones] or "none"
            problems.append(f"this {scene.task} scene has no {describe_place('zone', zone)} (its zones: {known})")
    if spec.min_height is not None or spec.max_height is not None:
        if scene.pos_dim != 3:
            problems.append(f"a {scene.task} scene is flat: a height limit cannot apply to it")
        else:
            z_low, z_high = scene.extent.low[2], scene.extent.high[2]
            for name in ("min_height", "max_height"):
                value = getattr(spec, name)
                if value is not None and not z_low < value < z_high:
                    problems.append(
                        f"height limit z = {value:.2f} is outside the workspace's heights [{z_low:.2f}, {z_high:.2f}]"
                    )
            if spec.min_height is not None and spec.max_height is not None and spec.min_height >= spec.max_height:
                problems.append(f"no height is above {spec.min_height:.2f} and below {spec.max_height:.2f}")
    if spec.route is not None and (scene.grid is None or scene.start is None):
        problems.append(f"routes are named between the agent and a target in a maze; this {scene.task} scene has none")
    return problems


@dataclass(frozen=True)
class _Target:
    position: tuple[float, ...]
    label: str
    cell: tuple[int, int] | None = None
    region: Box | None = None


def _target(spec: GoalSpec, scene: Scene) -> _Target | str:
    """Where a checked spec's target is, or why it has no place."""
    if spec.target == "marker" and spec.marker is not None:
        position = _lift(scene, np.asarray(_marker_at(scene, spec.marker)))
        return _Target(position, MARKER_LABELS[spec.marker], _cell_of(scene, position))
    if spec.target == "cell" and spec.cell is not None and scene.grid is not None:
        position = _lift(scene, scene.grid.centres(np.array([spec.cell]))[0])
        return _Target(position, f"cell {tuple(spec.cell)}", tuple(spec.cell))
    if spec.target == "position" and spec.position is not None:
        position = _lift(scene, np.asarray(spec.position))
        return _Target(position, f"position {tuple(spec.position)}", _cell_of(scene, position))
    if spec.target == "corner" and spec.corner is not None:
        corner = _corner(scene, spec.corner)
        if corner is None:
            return f"the {spec.corner} corner has no free cell"
        return _Target(corner[0], f"the {spec.corner} corner", _cell_of(scene, corner[0]))
    if spec.region is not None:
        region = scene.region(spec.region)
        position = _region_target(scene, region)
        if position is None:
            return f"the {spec.region} region has no free cell"
        return _Target(position, f"the {spec.region} region", _cell_of(scene, position), region)
    return f"target {spec.target!r} lacks its field"  # goal_problems has ruled this out


def _place_box(spec: GoalSpec, scene: Scene) -> Box | None:
    """The box a ruled-out target covers (its cell, region, corner, or the clearance round a point)."""
    if spec.target == "region" and spec.region is not None:
        return scene.region(spec.region)
    if spec.target == "corner" and spec.corner is not None:
        corner = _corner(scene, spec.corner)
        return None if corner is None else corner[1]
    if spec.target == "marker" and spec.marker is not None and _marker_at(scene, spec.marker) is not None:
        return _marker_box(scene, spec.marker)
    target = _target(spec, scene) if not goal_problems(spec, scene) else None
    if not isinstance(target, _Target):
        return None
    if scene.grid is not None and target.cell is not None:
        return _cell_box(scene.grid, target.cell, target.label)
    point = np.asarray(target.position)
    return Box(low=tuple(point - MARKER_CLEARANCE), high=tuple(point + MARKER_CLEARANCE), name=target.label)


def _route_boxes(spec: GoalSpec, scene: Scene, target: _Target, avoid: list[Box]) -> tuple[list[Box], str | None]:
    """Boxes over every free cell off the named route (so only it stays open), or why the route is not there."""
    grid, name = cast(MazeGrid, scene.grid), cast(str, spec.route)
    start = cast(tuple[int, int], _cell_of(scene, _lift(scene, np.asarray(scene.start))))
    goal = cast(tuple[int, int], target.cell)
    right, up = scene.image_axes()
    try:
        routes = named_routes(grid, start, goal, right, up)
    except RouteError as error:
        return [], f"no {name} route: {error}"
    if name not in routes:
        return [], (
            f"there is no open {name} route from the agent (cell {start}) to {target.label} (cell {goal}); the open "
            f"route(s): {', '.join(sorted(routes))}"
        )
    clear = [
        path
        for path in routes[name]
        if not any(box.contains(grid.centres(np.array(path[1:-1] or path))).any() for box in avoid)
    ]
    if not clear:
        return [], f"every {name} route to {target.label} enters what the instruction says to avoid"
    on_route = {cell for path in clear for cell in path}
    off = [tuple(int(v) for v in cell) for cell in np.argwhere(~grid.walls)]
    return [_cell_box(grid, cell, f"off the {name} route") for cell in off if cell not in on_route], None


def _resolve(
    spec: GoalSpec, scene: Scene, instruction: str, understood: list[str], excluded: Sequence[GoalSpec] = ()
) -> tuple[Goal | None, list[str]]:
    """The Goal of a spec in this scene, or None and every reason it cannot be used."""
    problems = goal_problems(spec, scene)
    if problems:
        return None, problems
    target = _target(spec, scene)
    if isinstance(target, str):
        return None, [target]
    if scene.grid is None and scene.forbidden(np.asarray(target.position)[None])[0]:
        return None, [f"the target ({target.label}) lies inside a forbidden zone or outside the workspace"]
    avoid = [scene.region(name) for name in spec.avoid_regions]
    if scene.grid is not None:
        avoid += [_cell_box(scene.grid, cell) for cell in spec.avoid_cells]
    constraints: list[str] = []
    for name in spec.avoid_corners:
        corner = _corner(scene, name)
        if corner is None:
            constraints.append(f"the {name} corner has no free cell: nothing there to avoid")
        else:
            avoid.append(corner[1])
    avoid += [_marker_box(scene, marker) for marker in spec.avoid_markers]
    for zone in spec.avoid_zones:
        avoid += [box for box in _zone_boxes(scene, zone) if box not in avoid]
    avoid += _height_boxes(spec, scene)
    constraints += [_height_words("min", spec.min_height)] if spec.min_height is not None else []
    constraints += [_height_words("max", spec.max_height)] if spec.max_height is not None else []
    if spec.route is not None:
        off_route, problem = _route_boxes(spec, scene, target, avoid)
        if problem:
            return None, [problem]
        avoid += off_route
        constraints.append(f"take the {spec.route} route")
    point = np.asarray(target.position)[None]
    inside = list(dict.fromkeys(box.name for box in avoid if box.contains(point)[0]))
    if inside:
        problems.append(f"the target ({target.label}) lies in what the instruction says to avoid ({', '.join(inside)})")
    for other in excluded:
        box = _place_box(other, scene)
        if box is not None and box.contains(point)[0]:
            problems.append(f"the target ({target.label}) is {box.name or 'a place'}, which the instruction rules out")
    if scene.start is not None:
        start = np.asarray(_lift(scene, scene.start))[None]
        start_in = list(dict.fromkeys(box.name for box in avoid if box.contains(start)[0]))
        if start_in:
            problems.append(f"the agent already stands in what the instruction says to avoid ({', '.join(start_in)})")
    if problems:
        return None, problems
    goal = Goal(
        instruction=instruction,
        kind=cast(GoalKind, spec.target),
        label=target.label,
        position=target.position,
        cell=target.cell,
        region=target.region,
        avoid=tuple(avoid),
        constraints=tuple(constraints),
        understood=tuple(understood),
    )
    return goal, []


def resolve_goal(
    spec: GoalSpec,
    scene: Scene,
    instruction: str,
    understood: Sequence[str] | None = None,
    excluded: Sequence[GoalSpec] = (),
) -> Goal:
    """Turn a GoalSpec into world coordinates in this scene; GoalParseError lists what does not fit."""
    understood = list(understood or [])
    goal, problems = _resolve(spec, scene, instruction, understood, excluded)
    if goal is None:
        raise GoalParseError(f"cannot follow {instruction!r} in this {scene.task} scene", understood, problems)
    return goal


def describe_spec(spec: GoalSpec) -> list[str]:
    """A spec in words, as 'understood' lists it."""
    target = {
        "marker": ("marker", spec.marker),
        "cell": ("cell", spec.cell),
        "position": ("position", tuple(spec.position or ())),
        "region": ("region", spec.region),
        "corner": ("corner", spec.corner),
    }.get(spec.target)
    said = [f"target: {describe_place(*target)}"] if target is not None else ["target: unclear"]
    for kind, values in (
        ("region", spec.avoid_regions),
        ("cell", spec.avoid_cells),
        ("corner", spec.avoid_corners),
        ("marker", spec.avoid_markers),
        ("zone", spec.avoid_zones),
    ):
        said += [f"avoid: {describe_place(kind, value)}" for value in values]
    said += [f"route: the {spec.route} route"] if spec.route else []
    said += [f"constraint: {_height_words('min', spec.min_height)}"] if spec.min_height is not None else []
    said += [f"constraint: {_height_words('max', spec.max_height)}"] if spec.max_height is not None else []
    return said


# ----------------------------------------------------------------------------------------------------------
# What the rules read must survive a fallback's answer


_READ_PREFIXES = ("avoid", "not the target", "route", "constraint")
"""What 'understood' lists besides targets: a fallback target must respect each."""


def _keeps_partial(answer: GoalSpec, partial: GoalSpec) -> tuple[GoalSpec, list[str]]:
    """The fallback's answer with every avoid and height limit the rules read added; problems where it
    names another target or route than the rules read."""
    problems = []
    if partial.target != "unclear" and describe_spec(answer)[0] != describe_spec(partial)[0]:
        problems.append(f"the fallback's {describe_spec(answer)[0]} is not the one read ({describe_spec(partial)[0]})")
    if partial.route is not None and answer.route != partial.route:
        problems.append(f"the fallback's route ({answer.route}) is not the {partial.route} route read")
    merged: dict[str, object] = answer.model_dump()
    for name in ("avoid_regions", "avoid_cells", "avoid_corners", "avoid_markers", "avoid_zones"):
        values = list(getattr(answer, name))
        merged[name] = values + [v for v in getattr(partial, name) if v not in values]
    mins = [v for v in (answer.min_height, partial.min_height) if v is not None]
    maxes = [v for v in (answer.max_height, partial.max_height) if v is not None]
    merged["min_height"], merged["max_height"] = (max(mins) if mins else None), (min(maxes) if maxes else None)
    merged["route"] = answer.route or partial.route
    return GoalSpec.model_validate(merged), problems


def _from_fallback(instruction: str, scene: Scene, fallback: GoalFallback, refusal: GoalNotUnderstood) -> Goal:
    understood = list(refusal.understood)
    try:
        answer = fallback(instruction, scene)
        if not isinstance(answer, GoalSpec):
            answer = GoalSpec.model_validate(answer)
    except (PerceptionError, ValidationError) as error:
        raise GoalParseError(
            f"neither the rules nor the fallback could read {instruction!r}",
            understood,
            refusal.reasons + [f"fallback: {str(error).splitlines()[0]}"],
        ) from None
    partial = refusal.partial
    problems: list[str] = []
    if partial is not None:
        answer, problems = _keeps_partial(answer, partial.spec)
    understood += [f"fallback {item}" for item in describe_spec(answer)]
    goal, resolve_problems = _resolve(
        answer, scene, instruction, understood, partial.excluded if partial is not None else ()
    )
    problems += resolve_problems
    if goal is None or problems:
        raise GoalParseError(
            f"the fallback's reading of {instruction!r} cannot be used", understood, refusal.reasons + problems
        )
    return goal


# ----------------------------------------------------------------------------------------------------------
# Entry point


def _ask_llm(instruction: str, scene: Scene, chat: ChatModel, max_reprompts: int, prompts_dir: str | None) -> GoalSpec:
    messages = load_prompt("goal", prompts_dir).format_messages(
        scene_description=scene_description(scene, prompts_dir),
        regions=", ".join(REGION_NAMES),
        instruction=instruction,
        format_instructions=GOAL_PARSER.get_format_instructions(),
    )
    try:
        return ask_structured(
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


def llm_fallback(
    chat: ChatModel, max_reprompts: int = DEFAULT_GOAL_REPROMPTS, prompts_dir: str | None = None
) -> GoalFallback:
    """A GoalFallback that asks an LLM (re-prompted with the reasons its answer could not be used)."""

    def ask(instruction: str, scene: Scene) -> GoalSpec:
        return _ask_llm(instruction, scene, chat, max_reprompts, prompts_dir)

    return ask


FAMILY_GOAL_READERS: dict[str, Callable[[str, Scene], Goal]] = {"house": parse_house_goal}
"""Task families whose instructions name the scene's own objects and rooms: family -> its goal reader."""


def parse_goal(
    instruction: str,
    scene: Scene,
    chat: ChatModel | None = None,
    max_reprompts: int = DEFAULT_GOAL_REPROMPTS,
    prompts_dir: str | None = None,
    fallback: GoalFallback | None = None,
) -> Goal:
    """The Goal an instruction asks for in this scene.

    chat None: the rule-based parser (offline); when it cannot read every word and `fallback` is given
    (e.g. llm_fallback(chat)), the fallback answers in the GoalSpec schema, keeping every avoid and limit
    the rules did read, and is checked like the rules. A ChatModel (e.g. perception.openai_vlm.OpenAIChat):
    the LLM reads every instruction itself, re-prompted up to max_reprompts times with the reasons its
    answer could not be used. Raises GoalParseError whenever no single usable target is named.
    A family with its own named things (the house: objects and rooms) is read by its reader in
    FAMILY_GOAL_READERS, whatever `chat` is.
    """
    if not instruction.strip():
        raise GoalParseError("the instruction is empty; name a target, e.g. 'go to the red ball'")
    if scene.task in FAMILY_GOAL_READERS:
        return FAMILY_GOAL_READERS[scene.task](instruction, scene)
    if chat is None:
        try:
            reading = read_goal(instruction)
        except GoalNotUnderstood as refusal:
            if fallback is None:
                raise
            return _from_fallback(instruction, scene, fallback, refusal)
        return resolve_goal(reading.spec, scene, instruction, reading.understood, reading.excluded)
    spec = _ask_llm(instruction, scene, chat, max_reprompts, prompts_dir)
    return resolve_goal(spec, scene, instruction, describe_spec(spec))


def target_for(instruction: str, scene: Scene) -> Goal:
    """The goal a route drawn for `instruction` must reach, for validating it.

    The rules read the instruction; when they find no target at all but the scene knows its goal marker,
    the route is checked against the goal marker (a free-form instruction a model can still follow),
    keeping every avoid, limit and ruled-out place the rules did read: 'don't go to the red ball, go to the
    shiny thing' is refused, not checked against the red ball. A target the rules did find but cannot use
    (a wall cell, two targets) still raises.
    """
    try:
        return parse_goal(instruction, scene)
    except GoalParseError as error:
        named_a_target = any(item.startswith("target") for item in error.understood)
        read_something = any(item.startswith(_READ_PREFIXES) for item in error.understood)
        partial = error.partial if isinstance(error, GoalNotUnderstood) else None
        if scene.goal is None or named_a_target or (read_something and partial is None):
            raise
        log.warning("%s; checking the route against the scene's goal marker instead", error)
        spec, excluded = GoalSpec(target="marker", marker="goal"), ()
        if partial is not None:
            spec, _ = _keeps_partial(spec, partial.spec)
            excluded = partial.excluded
        return resolve_goal(spec, scene, instruction, list(error.understood), excluded)
