"""World families behind one Task interface, found by the config's `task` name (families.py), and every shipped
variant registered as a gymnasium id on import (registration.py): `gym.make("mstt/PointMaze-ThreeRoutes-T1-v0")`.
"""

from __future__ import annotations

from mstt.agent.worlds.base import COLLISION_KEY, Episode, Task
from mstt.agent.worlds.families import FAMILIES, load_config, make_task, validate_config
from mstt.agent.worlds.registration import SHIPPED_IDS, make_variant_env, register_variant, variant_id

__all__ = [
    "COLLISION_KEY",
    "FAMILIES",
    "SHIPPED_IDS",
    "Episode",
    "Task",
    "load_config",
    "make_task",
    "make_variant_env",
    "register_variant",
    "validate_config",
    "variant_id",
]
