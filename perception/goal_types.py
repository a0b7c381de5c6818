"""What a resolved goal is: the world position to reach, the boxes to stay out of, and the words behind it.

Every goal reader (the maze/Fetch rules and LLM in perception.goals, the house reader in
perception.house_goals) returns this one type.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from mstt.perception.geometry import Box

GoalKind = Literal["marker", "cell", "position", "region", "corner", "object", "room"]


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
    """World boxes the route must stay out of (regions, cells, markers, zones, heights, off-route cells)."""
    constraints: tuple[str, ...] = ()
    """Every constraint on the way in words ('stay at or above z = 0.50', 'take the top route'); each is
    enforced through `avoid`."""
    understood: tuple[str, ...] = ()

    @property
    def target(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)
