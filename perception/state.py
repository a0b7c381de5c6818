"""Pixel-only state estimation: the agent's world position from the green marker in a frame, and its
velocity by finite differences over consecutive frames. For the maze the state is (x, y, vx, vy), the
layout of PointMaze's own observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mstt.perception.errors import PerceptionError, check_field, is_positive_number
from mstt.perception.scene import Scene
from mstt.perception.segmentation import marker_centroid


def estimate_position(frame: Image.Image | np.ndarray, scene: Scene) -> np.ndarray:
    """(P,) world position of the agent: the green marker's centroid lifted onto the agent's plane."""
    rgb = scene.as_frame(frame)
    uv = marker_centroid(rgb, "agent")
    if uv is None:
        raise PerceptionError(
            "no agent (green marker) visible in the frame; is it a top-down frame of the maze, rendered "
            "with the task's camera?"
        )
    return scene.to_world(uv[None])[0]


@dataclass
class PixelStateEstimator:
    """Tracks position and velocity from frames alone: update(frame) -> (2P,) [position, velocity].

    Velocity is the backward difference (p_t - p_{t-1}) / dt, zero on the first frame after reset.
    One pixel of centre error is ~0.03 world units in the 480x480 maze frame, so the velocity of
    frames dt apart carries ~0.03 / dt of noise: feed frames a few simulator steps apart for smooth
    velocities.
    """

    scene: Scene
    dt: float
    """Seconds between consecutive frames passed to update()."""
    lag: float = 0.0
    """Seconds the frame shows the past. MuJoCo draws bodies where the last mj_step's kinematics put
    them, one physics timestep (PointMaze: 0.01 s) before the observation; the position is advanced by
    velocity * lag to make up for it (0 reports what the frame shows)."""
    _previous: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        cls = "PixelStateEstimator"
        check_field(cls, is_positive_number(self.dt), "dt", self.dt, "must be a number of seconds > 0")
        lag_ok = self.lag == 0 or is_positive_number(self.lag)
        check_field(cls, lag_ok, "lag", self.lag, "must be a number of seconds >= 0")

    def reset(self) -> None:
        self._previous = None

    def update(self, frame: Image.Image | np.ndarray) -> np.ndarray:
        position = estimate_position(frame, self.scene)
        if self._previous is None:
            velocity = np.zeros_like(position)
        else:
            velocity = (position - self._previous) / self.dt
        self._previous = position
        return np.concatenate([position + velocity * self.lag, velocity])
