"""Typed task-variant configs loaded from YAML, validated at load time.

Every error names the file, the field and the offending value, so a user writing a new variant
(a new maze, a new forbidden zone) can fix it without reading code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Cell = tuple[int, int]
Vec3 = tuple[float, float, float]

# Characters of the maze art in YAML: a wall, a free cell, the fixed start and the fixed goal.
WALL, FREE, START, GOAL = "#", ".", "S", "G"
MAZE_CHARS = frozenset(WALL + FREE + START + GOAL)

# The reachable, collision-free workspace of the FetchReach gripper (metres, world frame): the
# table top area in front of the robot. Zones and goals outside it are refused at load time.
FETCH_WORKSPACE_LOW: Vec3 = (1.05, 0.40, 0.40)
FETCH_WORKSPACE_HIGH: Vec3 = (1.60, 1.10, 0.90)


class ConfigError(ValueError):
    """A config file is invalid; the message names the file, the field and the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MazeDatasetConfig(_Strict):
    """How the source dataset is generated, the D4RL maze2d way."""

    transitions: Annotated[int, Field(gt=0)] = 1_000_000
    """Total environment steps to record (D4RL's maze2d datasets have 1M)."""
    action_noise: Annotated[float, Field(ge=0)] = 0.5
    """Std of the Gaussian noise added to every expert action (Minari's pointmaze data: 0.5)."""
    waypoint_jitter: Annotated[float, Field(ge=0, lt=0.5)] = 0.2
    """Each waypoint is shifted by -U(0, jitter) per axis, so trajectories are not all identical."""
    waypoint_radius: Annotated[float, Field(gt=0)] = 0.1
    """A waypoint counts as reached within this distance (D4RL's solve threshold)."""
    episode_steps: Annotated[int, Field(gt=0)] = 1000
    """The never-reset stream is cut into episodes of this length (marked as truncations)."""
    seed: int = 0
    dataset_id: str | None = None
    """Minari id, e.g. 'mstt/maze-three-routes-v0'; default derived from the config name."""


class FetchDatasetConfig(_Strict):
    """How the FetchReach source dataset is generated: a noisy P-controller with detours."""

    transitions: Annotated[int, Field(gt=0)] = 100_000
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
    episode_steps: Annotated[int, Field(gt=0)] = 600
    """Evaluation episode length."""
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


class FetchConfig(_Strict):
    """One FetchReach variant: a fixed goal and the forbidden zones of this world."""

    task: Literal["fetch"]
    name: str
    variant: str
    role: Literal["source", "target"]
    env_id: Literal["FetchReach-v4"] = "FetchReach-v4"
    goal: Vec3 | None = None
    """Fixed goal (metres); None keeps the env's random goal."""
    zones: list[Zone] = []
    episode_steps: Annotated[int, Field(gt=0)] = 50
    dataset: FetchDatasetConfig = FetchDatasetConfig()
    render: RenderConfig = RenderConfig()

    @model_validator(mode="after")
    def _check_goal(self) -> FetchConfig:
        if self.goal is not None:
            for axis, value in enumerate(self.goal):
                if not FETCH_WORKSPACE_LOW[axis] <= value <= FETCH_WORKSPACE_HIGH[axis]:
                    raise ValueError(f"goal[{axis}]={value} is outside the workspace")
            for zone in self.zones:
                if all(lo <= v <= hi for v, lo, hi in zip(self.goal, zone.low, zone.high)):
                    raise ValueError(f"goal {self.goal} lies inside a zone {zone.low}..{zone.high}")
        return self


TaskConfig = MazeConfig | FetchConfig
_CONFIG_TYPES: dict[str, type[MazeConfig] | type[FetchConfig]] = {
    "maze": MazeConfig,
    "fetch": FetchConfig,
}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, resolving `extends: other.yaml` (relative to the file) recursively."""
    if path in seen:
        raise ConfigError(f"{path}: field 'extends' forms a cycle: {[str(p) for p in seen]}")
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is not None:
        base = _read_yaml((path.parent / str(parent)).resolve(), (*seen, path))
        data = _deep_merge(base, data)
    return data


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        value = item.get("input")
        lines.append(f"  field '{field}' = {value!r}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path) -> TaskConfig:
    """Load and validate one variant config; raise ConfigError naming file, field and value."""
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
    # Checks that need the task's own knowledge (a maze route exists, cells are free) live with
    # the task; run them here so every load is validated, whatever the caller does next.
    from agent.tasks import validate_config

    try:
        validate_config(config)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config
