"""The picture a perception test reads: a variant's start frame (``start_frame``: render_frame after the variant's own
reset, seed 0), with its task and its perception Scene."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mstt.agent.experiments.evaluate import start_frame
from mstt.agent.worlds import load_config, make_task
from mstt.perception import Scene


def variant_picture(config: Path) -> tuple[Any, Scene, np.ndarray]:
    """The task of a variant config, its Scene and its start frame."""
    task = make_task(load_config(config))
    return task, Scene.from_task(task), start_frame(task)
