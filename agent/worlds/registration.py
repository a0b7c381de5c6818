"""Every shipped task variant as a gymnasium id, registered on `import mstt.agent.worlds`, and `register_variant` for
a user's own YAML: `gym.make(id)` builds the env the project evaluates on, with the variant's start, goal and costs.

An id is `mstt/<Env>-<Name>-<Variant>-v0`: Env the gymnasium-robotics env the family runs on (ENV_NAMES), Name and
Variant the config's `name` and `variant` fields in PascalCase (split at anything but letters and digits), the Name
left out where Env already ends with it (FetchReach + 'reach'). Gymnasium 1.x has no entry-point plugins: without
importing mstt, `gym.make("mstt.agent.worlds:mstt/PointMaze-ThreeRoutes-T1-v0")` imports and registers on the way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, parse_env_id

from mstt.agent.core.config import TaskConfig, packaged_configs, resolve_config_path
from mstt.agent.worlds.base import Task
from mstt.agent.worlds.families import load_config, make_task, validate_config

NAMESPACE = "mstt"
VERSION = 0
"""The version every id carries; a change that alters what an existing id's env does is a new version."""
ENV_NAMES = {"maze": "PointMaze", "fetch": "FetchReach", "house": "MiniWorld"}
"""task -> the first part of its ids: the gymnasium-robotics env the family runs on (another family: its task name)."""
SHIPPED_VARIANTS = (
    "maze/source.yaml",
    "maze/t1.yaml",
    "maze/t2.yaml",
    "maze/t3.yaml",
    "maze/umaze.yaml",
    "maze/medium.yaml",
    "maze/large.yaml",
    "maze/tasks/t1_reverse.yaml",
    "maze/tasks/t1_mid_goal.yaml",
    "maze/tasks/t1_mid_start.yaml",
    "maze/tasks/t2_reverse.yaml",
    "maze/tasks/t2_mid_goal.yaml",
    "maze/tasks/t2_mid_start.yaml",
    "maze/tasks/t3_reverse.yaml",
    "maze/tasks/t3_mid_goal.yaml",
    "maze/tasks/t3_mid_start.yaml",
    "fetch/source.yaml",
    "fetch/zone.yaml",
    "fetch/zone_random_start.yaml",
    "fetch/tasks/zone_reverse.yaml",
    "fetch/tasks/zone_mid_goal.yaml",
    "fetch/tasks/zone_mid_start.yaml",
    "house/source.yaml",
    "house/blocked.yaml",
    "house/zone.yaml",
    "house/holdout.yaml",
    "house/holdout_source.yaml",
)
"""The variant configs (relative to the packaged configs/) registered on import; a test checks that it names every
YAML there that loads as a variant. Listed rather than found, so import reads no experiment config."""
ENTRY_POINT = f"{__name__}:make_variant_env"


class VariantEnv(gym.Wrapper[Any, Any, Any, Any]):
    """A variant's env (Task.make_env) as `mstt eval` runs it: reset pins the variant's start and goal unless the
    caller's options say otherwise (key by key), and info reports what the evaluation scores as a failure.

    info gains, at reset and every step: cost (1.0 while touching what the variant forbids: a blocked cell's walls,
    a Fetch zone; Task.violation on achieved_goal), failed (touched at any point of this episode), episode_cost (the
    steps touching so far). Fetch's ForbiddenZones reports the same values from the same zones.
    """

    def __init__(self, env: gym.Env, task: Task) -> None:
        super().__init__(env)
        self.task = task
        self._failed, self._cost = False, 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        pinned = {**(self.task.reset_options() or {}), **(options or {})}
        obs, info = self.env.reset(seed=seed, options=pinned or options)
        self._failed, self._cost = False, 0.0
        return obs, self._cost_info(info, obs)

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._cost_info(info, obs)

    def _cost_info(self, info: dict[str, Any], obs: dict[str, np.ndarray]) -> dict[str, Any]:
        touching = bool(self.task.violation(np.asarray(obs["achieved_goal"], dtype=np.float64)))
        self._failed |= touching
        self._cost += float(touching)
        info.update(cost=float(touching), failed=self._failed, episode_cost=self._cost)
        return info


def make_variant_env(config: str | Path | TaskConfig, render_mode: str | None = None) -> gym.Env:
    """The env of one variant (a config file or a loaded config): what `gym.make` calls for an mstt id."""
    loaded = config if isinstance(config, TaskConfig) else load_config(config)
    task = make_task(loaded)
    return VariantEnv(task.make_env(render_mode=render_mode), task)


def _pascal(text: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[\W_]+", text))


def variant_id(config: TaskConfig) -> str:
    """The gymnasium id of a variant config, e.g. 'mstt/PointMaze-ThreeRoutes-T1-v0' (see the module's doc)."""
    env = ENV_NAMES.get(config.task, _pascal(config.task))
    name, variant = _pascal(config.name), _pascal(config.variant)
    if not variant:
        raise ValueError(f"field 'variant' = {config.variant!r}: no letters or digits to name a gymnasium id with")
    parts = [env, variant] if env.endswith(name) else [env, name, variant]
    return f"{NAMESPACE}/{'-'.join(parts)}-v{VERSION}"


def _registered_for(spec: EnvSpec) -> str:
    if spec.entry_point == ENTRY_POINT:
        config = spec.kwargs["config"]
        return f"variant {config.variant!r} in code" if isinstance(config, TaskConfig) else str(config)
    return str(spec.entry_point)


def register_variant(path_or_config: str | Path | TaskConfig, env_id: str | None = None) -> str:
    """Register a variant (a YAML file, read as `mstt` commands read one, or a loaded config) as a gymnasium id and
    return the id: `env_id`, else variant_id(config). Registering the same file or config again returns its id; an id
    already taken by anything else is refused (ValueError naming both), as is a malformed `env_id`."""
    if isinstance(path_or_config, TaskConfig):
        config = path_or_config
        validate_config(config)
        source: str | TaskConfig = config
    else:
        path = resolve_config_path(path_or_config).resolve()
        config = load_config(path)
        source = str(path)
    env_id = env_id or variant_id(config)
    try:
        parse_env_id(env_id)
    except gym.error.Error as err:
        raise ValueError(f"env_id {env_id!r} is not a gymnasium id: {err}") from None
    taken = gym.registry.get(env_id)
    if taken is not None:
        if taken.entry_point == ENTRY_POINT and taken.kwargs.get("config") == source:
            return env_id
        theirs = _registered_for(taken)
        ours = source if isinstance(source, str) else f"variant {config.variant!r} in code"
        raise ValueError(
            f"{ours}: gymnasium id {env_id!r} is already registered for {theirs}; pass another env_id or give the "
            "variant another 'name' or 'variant'"
        )
    # task.make_env already wraps the simulator in gymnasium's passive checker, so the outer one would check twice.
    gym.register(
        id=env_id,
        entry_point=ENTRY_POINT,
        kwargs={"config": source},
        max_episode_steps=config.episode_steps,
        disable_env_checker=True,
    )
    return env_id


def _register_shipped() -> dict[str, Path]:
    shipped = {}
    for relative in SHIPPED_VARIANTS:
        path = packaged_configs() / relative
        shipped[register_variant(path)] = path.resolve()
    return shipped


SHIPPED_IDS: dict[str, Path] = _register_shipped()
"""Gymnasium id -> the config file, for every shipped variant (registered when this module is imported)."""
