"""Camera calibrations: MuJoCo's free camera (pinhole) and an orthographic top-down map, world points <-> pixels.

Perception (VLM demos, pixel-only state estimation) converts between image and world through these
objects, so a demo read off a picture lands exactly where the simulator would draw it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FreeCamera:
    """MuJoCo free-camera pose (the renderer's default_cam_config) plus image size and fovy."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    """Degrees, as in mjvCamera."""
    elevation: float
    """Degrees; -90 looks straight down."""
    fovy: float
    """Vertical field of view in degrees (model.vis.global_.fovy)."""
    width: int
    height: int

    def as_renderer_config(self) -> dict[str, object]:
        return dict(
            distance=self.distance,
            azimuth=self.azimuth,
            elevation=self.elevation,
            lookat=np.asarray(self.lookat, dtype=np.float64),
        )

    def _frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Camera position and its right / up / forward unit vectors in the world frame.

        Same construction as mjv_updateCamera for a free camera: forward from azimuth and elevation,
        up is forward rotated by +90 degrees of elevation, right = forward x up.
        """
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        forward = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        up = np.array([-math.sin(el) * math.cos(az), -math.sin(el) * math.sin(az), math.cos(el)])
        right = np.cross(forward, up)
        position = np.asarray(self.lookat, dtype=np.float64) - self.distance * forward
        return position, right, up, forward

    @property
    def focal_px(self) -> float:
        return 0.5 * self.height / math.tan(math.radians(self.fovy) / 2)

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixel coordinates (u right, v down; pixel i spans [i, i+1))."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        position, right, up, forward = self._frame()
        rel = points - position
        depth = rel @ forward
        if np.any(depth <= 0):
            raise ValueError("a point lies behind the camera")
        u = self.width / 2 + self.focal_px * (rel @ right) / depth
        v = self.height / 2 - self.focal_px * (rel @ up) / depth
        return np.stack([u, v], axis=-1)

    def pixel_to_world(self, pixels: np.ndarray, plane_z: float) -> np.ndarray:
        """(N, 2) pixel coordinates -> (N, 3) world points on the horizontal plane z = plane_z."""
        pixels = np.atleast_2d(np.asarray(pixels, dtype=np.float64))
        position, right, up, forward = self._frame()
        x_cam = (pixels[:, 0] - self.width / 2) / self.focal_px
        y_cam = -(pixels[:, 1] - self.height / 2) / self.focal_px
        rays = forward[None] + x_cam[:, None] * right[None] + y_cam[:, None] * up[None]
        if np.any(np.abs(rays[:, 2]) < 1e-12):
            raise ValueError("a pixel ray is parallel to the plane")
        scale = (plane_z - position[2]) / rays[:, 2]
        return position[None] + scale[:, None] * rays


@dataclass(frozen=True)
class TopDownMap:
    """An orthographic top-down map of a floor: world (x, z) <-> pixel (u right, v down), exactly.

    The map shows x growing to the right and z growing downwards (north, small z, at the top), over the window
    [x0, x1] x [z0, z1] that fills the image; pixel i spans [i, i+1).
    """

    x0: float
    x1: float
    z0: float
    z1: float
    width: int
    height: int

    @classmethod
    def framing(cls, extent: tuple[float, float, float, float], margin: float, width: int, height: int) -> TopDownMap:
        """The window a renderer shows for a floor of ``extent`` (min x, min z, max x, max z): the extent grown by
        ``margin`` on every side, then widened along one axis, about its centre, to the image's aspect ratio."""
        x0, z0, x1, z1 = extent[0] - margin, extent[1] - margin, extent[2] + margin, extent[3] + margin
        aspect, image_aspect = (x1 - x0) / (z1 - z0), width / height
        if aspect > image_aspect:
            grow = (x1 - x0) / image_aspect - (z1 - z0)
            z0, z1 = z0 - grow / 2, z1 + grow / 2
        elif aspect < image_aspect:
            grow = (z1 - z0) * image_aspect - (x1 - x0)
            x0, x1 = x0 - grow / 2, x1 + grow / 2
        return cls(x0, x1, z0, z1, width, height)

    @property
    def pixels_per_metre(self) -> float:
        return self.width / (self.x1 - self.x0)

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) floor points (x, z) -> (N, 2) pixel coordinates (u, v); columns after the first two (a height) are
        ignored, so the map is a perception Calibration of the floor."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        u = (points[:, 0] - self.x0) * self.width / (self.x1 - self.x0)
        v = (points[:, 1] - self.z0) * self.height / (self.z1 - self.z0)
        return np.stack([u, v], axis=-1)

    def pixel_to_world(self, pixels: np.ndarray, plane_z: float | None = None) -> np.ndarray:
        """(N, 2) pixel coordinates (u, v) -> (N, 2) floor points (x, z). ``plane_z`` is ignored: the map shows one
        plane, the floor (it is there so that the map is a perception Calibration)."""
        pixels = np.atleast_2d(np.asarray(pixels, dtype=np.float64))
        x = self.x0 + pixels[:, 0] * (self.x1 - self.x0) / self.width
        z = self.z0 + pixels[:, 1] * (self.z1 - self.z0) / self.height
        return np.stack([x, z], axis=-1)
