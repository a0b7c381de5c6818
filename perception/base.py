"""The perception boundary: a DemoPerceiver turns one picture of a changed world and an instruction into
an observation-only Demo. Backends (geometric, hf, openai) satisfy it and are built by name in
perception.factory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from mstt.agent.core.demo import Demo
from mstt.perception.scene import Scene


@runtime_checkable
class DemoPerceiver(Protocol):
    """Reads a route off a picture; raises perception.errors.PerceptionError when it cannot produce a
    valid one (every reason listed), perception.errors.BackendError when its model cannot be used."""

    name: str
    """The backend's registered name."""
    last_overlay: Path | None
    """The PNG drawn for the last call (accepted or refused route), when overlays are on."""

    def perceive(self, image: Image.Image | np.ndarray, instruction: str, scene: Scene) -> Demo:
        """image: (H, W, 3) RGB of the scene's calibrated size; instruction: what to do, in words."""
        ...
