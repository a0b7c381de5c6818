"""The geometric backend on rendered house maps (perception.house_map): furniture, closed doors and zones read off the
picture by colour, and routes that keep clear of them, whose points are free and which the house's own check_path
accepts."""

from __future__ import annotations

import numpy as np
import pytest
from start_frames import variant_picture

from mstt.agent.worlds.house import HouseTask
from mstt.perception import PerceptionError, Scene, make_perceiver
from mstt.perception.house_map import read_map

from repo_paths import CONFIGS

SAMPLE_STEP = 0.05
"""Metres between the points checked along a route."""


def _house(variant: str) -> tuple[HouseTask, Scene, np.ndarray]:
    return variant_picture(CONFIGS / f"house/{variant}.yaml")


@pytest.fixture(scope="module")
def blocked() -> tuple[HouseTask, Scene, np.ndarray]:
    return _house("blocked")


@pytest.fixture(scope="module")
def zone() -> tuple[HouseTask, Scene, np.ndarray]:
    return _house("zone")


def _samples(points: np.ndarray) -> np.ndarray:
    pieces = []
    for a, b in zip(points[:-1], points[1:]):
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / SAMPLE_STEP)) + 1)
        pieces.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    return np.vstack(pieces)


def _route(house: tuple[HouseTask, Scene, np.ndarray], instruction: str) -> np.ndarray:
    task, scene, frame = house
    demo = make_perceiver("geometric").perceive(frame, instruction, scene)
    assert demo.task == "house" and demo.source == "scripted"
    points = np.asarray(demo.points)
    check = task.check_path(points, [])
    assert check.refusal is None, check.refusal
    return points


def test_map_reading_finds_the_wardrobe_and_the_closed_door(blocked: tuple[HouseTask, Scene, np.ndarray]) -> None:
    _, scene, frame = blocked
    reading = read_map(frame, scene)
    wardrobe = next(box for box in scene.furniture if box.name == "wardrobe")
    read = [box for box in reading.furniture if np.allclose(box.centre, wardrobe.centre, atol=0.15)]
    # walls are drawn over the ends of a wardrobe that spans the hall
    assert len(read) == 1 and np.allclose(np.subtract(read[0].high, read[0].low), [0.6, 2.0], atol=0.2)
    assert len(reading.furniture) == len(scene.furniture)  # goal objects are not furniture
    door = scene.to_pixel(np.array([[12.0, 6.0]]))[0].astype(int)
    assert reading.solid[door[1], door[0]]  # the closed door blocks
    ball = scene.to_pixel(np.array([[14.5, 6.5]]))[0].astype(int)
    assert not reading.solid[ball[1], ball[0]]  # the red ball does not


def test_route_around_the_closed_door_and_the_wardrobe(blocked: tuple[HouseTask, Scene, np.ndarray]) -> None:
    task, scene, _ = blocked
    points = _route(blocked, "go to the red ball")
    np.testing.assert_allclose(points[0], scene.start)
    np.testing.assert_allclose(points[-1], [14.5, 6.5])
    assert len(points) <= 10  # simplified to a few waypoints
    samples = _samples(points)
    assert not scene.forbidden(samples).any() and not task.violation(samples).any()
    assert all(scene.barrier_crossed(a, b) is None for a, b in zip(points[:-1], points[1:]))
    assert (samples[:, 1] > 8.0).any()  # the south hall: the kitchen door is closed, the wardrobe blocks the north
    assert task.layout.clearance(samples).min() > 0.35  # the agent's body (0.4 m) clears walls, less pixel error


def test_route_around_the_wet_floor(zone: tuple[HouseTask, Scene, np.ndarray]) -> None:
    task, scene, _ = zone
    points = _route(zone, "go to the kitchen without crossing the wet floor")
    samples = _samples(points)
    assert not scene.zones[0].contains(samples).any() and not task.violation(samples).any()
    assert scene.room_of(points[-1]) == "kitchen"


def test_no_route_is_a_perception_error(blocked: tuple[HouseTask, Scene, np.ndarray]) -> None:
    _, scene, frame = blocked
    with pytest.raises(PerceptionError, match="no free route on the map"):
        make_perceiver("geometric").perceive(frame, "go to the red ball without crossing the south hall", scene)
