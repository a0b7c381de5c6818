"""Typed task-variant configs loaded from YAML, validated at load time.

Every error names the file, the field and the offending value, so a user writing a new variant
(a new maze, a new forbidden zone) can fix it without reading code. Command-line overrides (``--seed``, ``--set``,
``--ablation``) change the YAML mapping before it is validated, so they are checked exactly like the file.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
import yaml
from numpy.typing import ArrayLike
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

Cell = tuple[int, int]
Vec3 = tuple[float, float, float]

# Characters of the maze art in YAML: a wall, a free cell, the fixed start and the fixed goal.
WALL, FREE, START, GOAL = "#", ".", "S", "G"
MAZE_CHARS = frozenset(WALL + FREE + START + GOAL)

# The reachable, collision-free workspace of the FetchReach gripper (metres, world frame): the
# table top area in front of the robot. Zones and goals outside it are refused at load time.
FETCH_WORKSPACE_LOW: Vec3 = (1.05, 0.40, 0.40)
FETCH_WORKSPACE_HIGH: Vec3 = (1.60, 1.10, 0.90)


DEMO_FIELDS = frozenset({"world", "reversible", "demo_clip_depth"})
"""Fields that say how a variant reads a demo, not how source data is made: they never enter a run's fingerprint."""


MAX_STEPS = 100_000_000
"""Upper bound of every step count in a config (dataset size, episode length): 100x D4RL's largest datasets, far
below where arrays of that many steps stop fitting in memory or in int64 arithmetic."""
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS)]


class ConfigError(ValueError):
    """A config file is invalid; the message names the file, the field and the value."""


class Settings(BaseModel):
    """A frozen block of settings: unknown fields and non-finite numbers are refused at load time (an infinite noise
    or radius is never meant, and only breaks things far from the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)


class _Strict(Settings):
    _file: Path | None = PrivateAttr(default=None)
    """The YAML file a loaded config came from (set by load_config; not a field, so never in a dump)."""


class MazeDatasetConfig(_Strict):
    """How the source dataset is generated, the D4RL maze2d way."""

    transitions: Steps = 1_000_000
    """Total environment steps to record (D4RL's maze2d datasets have 1M)."""
    action_noise: Annotated[float, Field(ge=0)] = 0.5
    """Std of the Gaussian noise added to every expert action (Minari's pointmaze data: 0.5)."""
    waypoint_jitter: Annotated[float, Field(ge=0, lt=0.5)] = 0.2
    """Each waypoint is shifted by -U(0, jitter) per axis, so trajectories are not all identical."""
    waypoint_radius: Annotated[float, Field(gt=0)] = 0.1
    """A waypoint counts as reached within this distance (D4RL's solve threshold)."""
    episode_steps: Steps = 1000
    """The never-reset stream is cut into episodes of this length (marked as truncations)."""
    seed: int = 0
    dataset_id: str | None = None
    """Minari id, e.g. 'mstt/maze-three-routes-v0'; default derived from the config name."""


class FetchDatasetConfig(_Strict):
    """How the FetchReach source dataset is generated: a noisy P-controller with detours."""

    transitions: Steps = 100_000
    action_noise: Annotated[float, Field(ge=0)] = 0.2
    gain: Annotated[float, Field(gt=0)] = 10.0
    """P gain: action = gain * (target - grip_pos), clipped to [-1, 1] (one action unit = 5 cm)."""
    detour_prob: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Share of episodes that pass a random intermediate waypoint (over or around a virtual box)."""
    seed: int = 0
    dataset_id: str | None = None


class RenderConfig(_Strict):
    width: Annotated[int, Field(gt=15)] = 480
    height: Annotated[int, Field(gt=15)] = 480


class MazeConfig(_Strict):
    """One maze variant: the map, what is blocked, where the episode starts and ends."""

    task: Literal["maze"]
    name: str
    """Family name shared by the source and its targets, e.g. 'three-routes'."""
    variant: str
    """'source', 't1', ...: the structural variant this file describes."""
    role: Literal["source", "target"]
    rows: list[str] | None = None
    """Maze art: '#' wall, '.' free, 'S' start, 'G' goal. Exclusive with builtin."""
    builtin: Literal["umaze", "medium", "large"] | None = None
    """One of gymnasium-robotics' standard PointMaze maps (random start and goal unless given)."""
    blocked: list[Cell] = []
    """Free cells (row, col) that this variant turns into walls."""
    start: Cell | None = None
    goal: Cell | None = None
    episode_steps: Steps = 600
    """Evaluation episode length."""
    world: str | None = None
    """The variant whose walls this one has, when it is a new task in that world (another start or goal): demos of
    that world apply here. None: the variant itself."""
    reversible: bool = True
    """Motions can be run backwards (a point mass can): a task whose goal lies behind its start along a demo's route
    reads the demo walked the other way."""
    demo_clip_depth: Annotated[float, Field(ge=0, lt=0.5)] = 0.25
    """How deep (world units; a cell is 1) a demo's straight segment may cut into a wall corner between two adjacent
    free cells and still be accepted, with a warning. Routes drawn through every second or third cell centre cut
    corners by up to about 0.17."""
    dataset: MazeDatasetConfig = MazeDatasetConfig()
    render: RenderConfig = RenderConfig()

    @model_validator(mode="after")
    def _check_map(self) -> MazeConfig:
        if (self.rows is None) == (self.builtin is None):
            raise ValueError("give exactly one of 'rows' (maze art) or 'builtin'")
        return self


class Zone(_Strict):
    """An axis-aligned forbidden box in world coordinates (metres)."""

    low: Vec3
    high: Vec3

    @model_validator(mode="after")
    def _check_box(self) -> Zone:
        for axis, (lo, hi) in enumerate(zip(self.low, self.high)):
            if not lo < hi:
                raise ValueError(f"low[{axis}]={lo} must be below high[{axis}]={hi}")
            if lo < FETCH_WORKSPACE_LOW[axis] or hi > FETCH_WORKSPACE_HIGH[axis]:
                raise ValueError(
                    f"zone [{lo}, {hi}] on axis {axis} leaves the workspace "
                    f"[{FETCH_WORKSPACE_LOW[axis]}, {FETCH_WORKSPACE_HIGH[axis]}]"
                )
        return self

    def contains(self, points: ArrayLike) -> np.ndarray:
        """(..., 3) positions -> (...,) inside the box or on its face (the same as ``depth(points) >= 0``, cheaper: the
        per-step zone check and the planner's violation test use it)."""
        points = np.asarray(points, dtype=float)
        return np.all((points >= self.low) & (points <= self.high), axis=-1)

    def depth(self, points: ArrayLike) -> np.ndarray:
        """(..., 3) positions -> (...,) signed depth: inside the box or on its face, the distance to its nearest face
        (>= 0); outside, minus the distance to the box. ``depth >= 0`` is "in the zone"."""
        points = np.asarray(points, dtype=float)
        low, high = np.asarray(self.low), np.asarray(self.high)
        inside = np.minimum(points - low, high - points).min(axis=-1)
        outside = np.linalg.norm(np.maximum(0.0, np.maximum(low - points, points - high)), axis=-1)
        return np.where(inside >= 0, inside, -outside)


class FetchConfig(_Strict):
    """One FetchReach variant: a fixed goal and the forbidden zones of this world."""

    target_fields: ClassVar[frozenset[str]] = frozenset({"start", "start_jitter"})
    """Fields only a target variant may set (where its episodes start): a source keeps their defaults, so they never
    enter a run's fingerprint (a run folder trained before they existed keeps its own)."""

    task: Literal["fetch"]
    name: str
    variant: str
    role: Literal["source", "target"]
    env_id: Literal["FetchReach-v4"] = "FetchReach-v4"
    goal: Vec3 | None = None
    """Fixed goal (metres); None keeps the env's random goal."""
    zones: list[Zone] = []
    episode_steps: Steps = 50
    world: str | None = None
    """The variant whose zones this one has, when it is a new task in that world: demos of that world apply here."""
    reversible: bool = True
    """Reaching motions can be run backwards: a task whose goal lies behind its start along a demo's route reads the
    demo walked the other way."""
    demo_clip_depth: Annotated[float, Field(ge=0, lt=0.05)] = 0.01
    """How deep (metres) a demo may graze a zone's edge and still be accepted, with a warning."""
    start: Vec3 | None = None
    """Where each episode's gripper starts (metres), carried there from FetchReach's home pose inside reset (target
    variants only; None: the home pose)."""
    start_jitter: Annotated[float, Field(ge=0, le=0.05)] = 0.0
    """Half-width (metres) of the box around the start that each episode's gripper starts from, drawn from the reset
    seed, outside every zone (target variants only; 0: every episode starts at the start)."""
    dataset: FetchDatasetConfig = FetchDatasetConfig()
    render: RenderConfig = RenderConfig()

    def _check_point(self, field: str, point: Vec3) -> None:
        """A fixed start or goal lies in the workspace and outside every zone."""
        for axis, value in enumerate(point):
            if not FETCH_WORKSPACE_LOW[axis] <= value <= FETCH_WORKSPACE_HIGH[axis]:
                raise ValueError(f"{field}[{axis}]={value} is outside the workspace")
        for zone in self.zones:
            if zone.contains(point):
                raise ValueError(f"{field} {point} lies inside a zone {zone.low}..{zone.high}")

    @model_validator(mode="after")
    def _check_start(self) -> FetchConfig:
        if self.role == "source" and (self.start is not None or self.start_jitter):
            raise ValueError("start and start_jitter apply to target variants: source data starts at the home pose")
        if self.start is not None:
            self._check_point("start", self.start)
        return self

    @model_validator(mode="after")
    def _check_goal(self) -> FetchConfig:
        if self.goal is not None:
            self._check_point("goal", self.goal)
        return self


HOUSE_COLOURS = ("blue", "green", "grey", "purple", "red", "yellow")
"""The colours MiniWorld draws boxes, balls and keys in (miniworld.entity.COLORS)."""
HouseColour = Literal["blue", "green", "grey", "purple", "red", "yellow"]
Point2 = tuple[float, float]
"""A point on the house's floor: (x, z) in metres (MiniWorld's floor is the x-z plane)."""
Metres = Annotated[float, Field(gt=0)]


def _span(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] < value[1]:
        raise ValueError(f"[{value[0]}, {value[1]}] is empty: the first bound must be below the second")
    return value


Span = Annotated[tuple[float, float], AfterValidator(_span)]
"""[low, high] along one floor axis, metres."""


class HouseRoom(_Strict):
    """An axis-aligned rectangular room (a hallway is a long, thin room)."""

    name: str
    x: Span
    z: Span
    floor: str = "floor_tiles_bw"
    """MiniWorld floor texture (a file name in miniworld/textures without its _N suffix: wood, marble, ...)."""
    wall: str = "concrete"
    """MiniWorld wall texture."""


class HouseDoorway(_Strict):
    """An opening in the wall two rooms share."""

    rooms: tuple[str, str]
    at: float
    """Centre of the opening along the shared wall: world x for a wall of constant z, world z for one of constant x."""
    width: Metres = 1.2
    closed: bool = False
    """A closed doorway is a wall: target variants close routes with it."""


class HouseBox(_Strict):
    """Furniture: a box the agent cannot pass through."""

    name: str | None = None
    at: Point2
    """Centre of its footprint."""
    size: tuple[Metres, Metres]
    """Footprint (along x, along z)."""
    height: Metres = 0.8
    colour: HouseColour = "grey"


class HouseObject(_Strict):
    """A coloured object a goal can name ("the red ball"). It marks a place; the agent does not collide with it."""

    name: str
    kind: Literal["ball", "box", "key"]
    colour: HouseColour
    at: Point2


class HouseZone(_Strict):
    """A forbidden floor rectangle (a wet floor): cost = steps with the agent's centre inside, failure = entered."""

    name: str
    x: Span
    z: Span


class HouseStart(_Strict):
    """Where a target variant's episodes start."""

    room: str
    at: Point2
    heading: float = 0.0
    """Degrees from the +x axis towards +z: the agent faces (cos, sin) of it in (x, z)."""


class HouseDatasetConfig(_Strict):
    """How the source dataset is generated, the D4RL way: one never-reset stream of a noisy scripted expert that
    walks the room graph to random goals, cut into episodes."""

    transitions: Steps = 500_000
    random_action_prob: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Probability that a step takes a uniformly random action instead of the expert's (the discrete counterpart of
    D4RL's Gaussian action noise)."""
    waypoint_jitter: Annotated[float, Field(ge=0, lt=0.5)] = 0.2
    """Each intermediate waypoint is shifted by U(-jitter, jitter) metres per axis where the route stays clear."""
    episode_steps: Steps = 1000
    """The never-reset stream is cut into episodes of this length (marked as truncations)."""
    seed: int = 0
    dataset_id: str | None = None
    """Minari id; default derived from the config name ('mstt/house-<name>-v0')."""


class EgocentricConfig(_Strict):
    """Size of the agent's egocentric RGB frame (MiniWorld's obs_width / obs_height)."""

    width: Annotated[int, Field(gt=15)] = 80
    height: Annotated[int, Field(gt=15)] = 60


class HouseConfig(_Strict):
    """One house variant on MiniWorld: rooms, doorways, furniture, goal objects, forbidden zones, start and goal.

    Checks across fields (rooms overlap, a doorway leads nowhere, a name that does not exist) run in HouseLayout
    (agent/core/house_layout.py), which names the field and value."""

    task: Literal["house"]
    name: str
    variant: str
    role: Literal["source", "target"]
    rooms: Annotated[list[HouseRoom], Field(min_length=1)]
    doorways: list[HouseDoorway] = []
    boxes: list[HouseBox] = []
    objects: list[HouseObject] = []
    zones: list[HouseZone] = []
    start: HouseStart | None = None
    goal: str | Point2 | None = None
    """An object's name or an (x, z) point; with start, the variant's fixed task (None: random, as in the source)."""
    episode_steps: Steps = 500
    world: str | None = None
    """The variant whose walls this one has, when it is a new task in that world: demos of that world apply here."""
    reversible: bool = True
    """Walking a route backwards is walking it forwards from the other end."""
    demo_clip_depth: Annotated[float, Field(ge=0, lt=0.4)] = 0.1
    """How far (metres) a demo segment may pass inside the agent's clearance of a wall, a box or a zone and still be
    accepted, with a warning."""
    dataset: HouseDatasetConfig = HouseDatasetConfig()
    render: RenderConfig = RenderConfig()
    """Size of the top-down map picture."""
    egocentric: EgocentricConfig = EgocentricConfig()


TaskConfig = MazeConfig | FetchConfig | HouseConfig
_CONFIG_TYPES: dict[str, type[MazeConfig] | type[FetchConfig] | type[HouseConfig]] = {
    "maze": MazeConfig,
    "fetch": FetchConfig,
    "house": HouseConfig,
}


class _Replace(dict[str, Any]):
    """A mapping tagged ``!replace`` in YAML: under `extends` (or an override) it replaces the inherited mapping
    instead of merging into it, e.g. ``demos: !replace {t1: ../demos/maze_t1.json}`` for an experiment with fewer
    targets than the one it extends."""


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, _Replace):
            merged[key] = dict(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first: tuple[int, str], second: tuple[int, str]) -> None:
        super().__init__(
            f"field {key!r} is given twice: {first[1]} (line {first[0]}) and {second[1]} (line {second[0]}); "
            "keep one (YAML would silently take the last)"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: plain YAML lets the last
    one silently win, so a forgotten earlier line would quietly change an experiment."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, tuple[int, str]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=True)
            where = (key_node.start_mark.line + 1, repr(value_node.value) if isinstance(value_node, yaml.ScalarNode)
                     else "a " + ("list" if isinstance(value_node, yaml.SequenceNode) else "mapping"))
            try:
                first = seen.setdefault(key, where)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first is not where:
                raise _DuplicateKeyError(key, first, where)
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(
    "!replace", lambda loader, node: _Replace(loader.construct_mapping(node, deep=True))
)


CONFIGS_PREFIX = "configs"
"""The folder a command-line path starts with to name a config or demo that ships in the package (mstt.configs)."""


def packaged_configs() -> Path:
    """The installed configs/ folder (package data ``mstt.configs``): a real folder, so the files a config names
    (``extends``, ``source``, ``targets``, ``demos``) resolve beside it as they do in a checkout."""
    return Path(str(files("mstt.configs")))


def resolve_config_path(path: str | Path) -> Path:
    """The file a command-line path names: ``path`` itself when it exists (relative to the working directory or
    absolute), else, for a relative path ``configs/...``, that file in the installed package, so that
    ``mstt demo-make configs/maze/t1.yaml`` works from any directory. ConfigError naming ``path`` and where it was
    looked for when neither exists."""
    given = Path(path)
    if given.exists():
        return given
    if given.is_absolute():
        raise ConfigError(f"{path}: file not found")
    looked = f"looked in {Path.cwd()}"
    if given.parts[:1] == (CONFIGS_PREFIX,):
        packaged = packaged_configs().joinpath(*given.parts[1:])
        if packaged.exists():
            return packaged
        looked += f" and in the installed package's configs ({packaged_configs()})"
    raise ConfigError(f"{path}: file not found ({looked})")


def referenced_file(owner: Path, field: str, value: Any) -> Path:
    """The file a config field names (``extends``, ``source``, ``targets[0]``, ``demos.t1``), relative to the
    config that names it; ConfigError naming that config, the field and the value when it is not a readable file."""
    target = (owner.parent / str(value)).resolve()
    if not target.exists():
        raise ConfigError(f"{owner}: field '{field}' = {value!r}: file not found ({target})")
    if not target.is_file():
        raise ConfigError(f"{owner}: field '{field}' = {value!r}: {target} is a folder, not a file")
    return target


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, resolving `extends: other.yaml` (relative to the file) recursively."""
    if path in seen:
        raise ConfigError(f"{path}: field 'extends' forms a cycle: {[str(p) for p in seen]}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except _DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is not None:
        base = _read_yaml(referenced_file(path, "extends", parent), (*seen, path))
        data = _deep_merge(base, data)
    return data


ABLATIONS_FILE = "ablations.yaml"
"""Named override sets of one config family, in a file beside its experiment configs (configs/maze/ablations.yaml):
``ablations: {NAME: {description: ..., set: {planner.match_radius: null, ...}}}``."""


@dataclass(frozen=True)
class Override:
    """One change to an experiment's YAML mapping, made after `extends` is resolved and before validation, like one
    more `extends` child that gives only this field: a mapping value merges into the mapping there (unless tagged
    ``!replace``), any other value replaces it."""

    key: str
    """Dotted field path, e.g. 'planner.match_radius'."""
    value: Any
    """The value, already read as YAML."""
    origin: str
    """The command-line words that asked for it ('--set planner.match_radius=0.1', '--ablation planner_token'):
    errors and result files name it."""

    def __post_init__(self) -> None:
        if "" in self.key.split("."):
            raise ConfigError(f"{self.origin}: {self.key!r} is not a dotted field path (e.g. planner.match_radius)")

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))


def parse_set(text: str) -> Override:
    """``KEY=VALUE`` as given to ``--set``; VALUE is read as YAML: 0.1, null, true, [mstt, bc], {score: token}."""
    origin = f"--set {shlex.quote(text)}"
    key, equals, raw = text.partition("=")
    if not equals:
        raise ConfigError(f"{origin}: expected KEY=VALUE, e.g. --set planner.match_radius=0.1")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: the value is not valid YAML: {' '.join(str(err).split())}") from None
    return Override(key.strip(), value, origin)


class Ablation(_Strict):
    """One named ablation: the fields it changes in the family's experiment configs."""

    description: str
    set: Annotated[dict[str, Any], Field(min_length=1)]
    """Dotted field path -> value, as ``--set`` takes them."""


class _AblationsFile(_Strict):
    ablations: dict[str, Ablation]


def load_ablations(path: str | Path) -> dict[str, Ablation]:
    """Load and validate an ablations file (see ABLATIONS_FILE); ConfigError naming the file, field and value."""
    path = Path(path).resolve()
    try:
        return _AblationsFile.model_validate(_read_yaml(path)).ablations
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from None


def ablation_overrides(config: Path, name: str) -> list[Override]:
    """The overrides of ablation ``name`` in the ablations file beside the experiment config ``config``."""
    origin = f"--ablation {name}"
    file = config.parent / ABLATIONS_FILE
    if not file.is_file():
        raise ConfigError(f"{origin}: {config} has no ablations file beside it ({file} not found)")
    ablations = load_ablations(file)
    if name not in ablations:
        raise ConfigError(f"{origin}: not an ablation of {file}; choose one of {', '.join(sorted(ablations))}")
    return [Override(key, value, origin) for key, value in ablations[name].set.items()]


def command_line_overrides(
    config: str | Path, seed: int | None = None, sets: Sequence[str] = (), ablation: str | None = None
) -> list[Override]:
    """The overrides of ``--ablation NAME``, ``--seed N`` (the experiment's top-level seed) and every
    ``--set KEY=VALUE``, in that order, so a later one wins."""
    overrides = ablation_overrides(Path(config).resolve(), ablation) if ablation is not None else []
    if seed is not None:
        overrides.append(Override("seed", seed, f"--seed {seed}"))
    return overrides + [parse_set(text) for text in sets]


def apply_overrides(data: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """``data`` (a YAML mapping, `extends` resolved) with every override applied in order."""
    for override in overrides:
        nested: Any = override.value
        for part in reversed(override.path):
            nested = {part: nested}
        data = _deep_merge(data, nested)
    return data


def describe_overrides(overrides: Sequence[Override]) -> tuple[str, ...]:
    """The command-line words of ``overrides``, each once, in order: what a result file records beside its config."""
    return tuple(dict.fromkeys(override.origin for override in overrides))


def _blame(loc: tuple[str, ...], overrides: Sequence[Override]) -> str:
    """'ORIGIN: ' for the overrides that set the field at ``loc``, a section around it or a field inside it (every
    override for a check across fields, whose loc is empty); '' when the file alone is to blame."""
    origins = describe_overrides([o for o in overrides if not loc or loc[: len(o.path)] == o.path[: len(loc)]])
    return " ".join(origins) + ": " if origins else ""


def _format_validation_error(path: Path, err: ValidationError, overrides: Sequence[Override] = ()) -> str:
    """One line: the file, then every field that failed with its value and what is wrong with it, each led by the
    command-line override that set it, if one did."""
    problems = []
    for item in err.errors():
        loc = tuple(str(part) for part in item["loc"])
        field = ".".join(loc) or "(top level)"
        problems.append(f"{_blame(loc, overrides)}field '{field}' = {item.get('input')!r}: {item['msg']}")
    return f"{path}: invalid config: " + "; ".join(problems)


def check_device(name: str) -> str:
    """``name`` when it is 'auto' or a torch device string ('cpu', 'cuda', 'cuda:1', 'mps'); ValueError otherwise."""
    if name == "auto":
        return name

    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name!r} is not a device: use auto, cpu, cuda, cuda:N or another torch device") from None
    return name


def config_file(config: TaskConfig) -> str:
    """The file a loaded variant config came from, for messages (its variant when it was built in code)."""
    return str(config._file) if config._file is not None else f"variant {config.variant!r}"


def read_task_config(path: str | Path) -> TaskConfig:
    """Read one variant config and check its fields; raise ConfigError naming file, field and value.

    The checks that need a task family's own knowledge (a maze route exists, cells are free) run in
    mstt.agent.worlds.load_config, which every caller uses.
    """
    path = Path(path).resolve()
    data = _read_yaml(path)
    task = data.get("task")
    if task not in _CONFIG_TYPES:
        raise ConfigError(
            f"{path}: field 'task' = {task!r} is not a known task; choose one of {sorted(_CONFIG_TYPES)}"
        )
    try:
        config = _CONFIG_TYPES[task].model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from None
    config._file = path
    return config
