"""The frame -> pose localizer (skills/localizer.py): its error measure, an exact save/load round trip, a resumed
training equal to a straight one, the particle filter that tracks the pose from readings, actions and a map, and
clear refusals of bad configs and inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mstt.skills.checkpoint import CheckpointError
from mstt.skills.localizer import Localizer, LocalizerConfig, PoseFilter, pose_errors, train_localizer
from mstt.skills.training import LoopSettings

HEIGHT, WIDTH = 12, 16
TINY = LocalizerConfig(channels=(4, 8), hidden=16, steps=20, batch_size=8, log_every=5, device="cpu")


def _frames(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Random frames with random poses: enough to exercise training and saving."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(n, HEIGHT, WIDTH, 3), dtype=np.uint8)
    heading = rng.uniform(-math.pi, math.pi, n)
    poses = np.stack([rng.uniform(0, 16, n), rng.uniform(0, 10, n), np.cos(heading), np.sin(heading)], axis=1)
    return frames, poses.astype(np.float32)


def _pose(x: float, z: float, degrees: float) -> list[float]:
    return [x, z, math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_pose_errors_measure_metres_and_degrees() -> None:
    true = np.array([_pose(0, 0, 170), _pose(1, 1, 0)])
    estimated = np.array([_pose(3, 4, -170), _pose(1, 1, 30)])  # 5 m off; 20 degrees across the wrap, 30 degrees
    errors = pose_errors(estimated, true)
    assert errors.frames == 2
    assert errors.position_median_m == pytest.approx(2.5)
    assert errors.heading_median_deg == pytest.approx(25.0)
    assert errors.heading_p90_deg == pytest.approx(29.0)


def test_locate_gives_positions_and_unit_headings() -> None:
    frames, poses = _frames()
    model, report = train_localizer(frames, poses, TINY, LoopSettings(progress=False))
    located = model.locate(frames)
    assert located.shape == (len(frames), 4) and located.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(located[:, 2:], axis=1), 1.0, rtol=1e-5)
    assert report.frames == len(frames) and report.steps == TINY.steps and math.isfinite(report.final_loss)


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    frames, poses = _frames()
    model, _ = train_localizer(frames, poses, TINY, LoopSettings(progress=False))
    loaded = Localizer.from_pretrained(model.save_pretrained(tmp_path / "localizer"))
    assert loaded.config == model.config and loaded.frame_size == (HEIGHT, WIDTH)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(loaded.locate(frames), model.locate(frames))


def test_a_checkpoint_of_another_frame_size_is_refused(tmp_path: Path) -> None:
    frames, poses = _frames()
    model, _ = train_localizer(frames, poses, TINY, LoopSettings(progress=False))
    folder = Path(model.save_pretrained(tmp_path / "localizer"))
    config = folder / "config.json"
    config.write_text(config.read_text().replace(f'"width": {WIDTH}', '"width": 40'))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        Localizer.from_pretrained(folder)


def test_resumed_training_equals_uninterrupted(tmp_path: Path) -> None:
    frames, poses = _frames()
    straight, _ = train_localizer(frames, poses, TINY, LoopSettings(progress=False))
    settings = LoopSettings(directory=tmp_path / "loop", checkpoint_every=5, progress=False)
    train_localizer(frames, poses, LocalizerConfig(**{**TINY.__dict__, "steps": 10}), settings)  # "killed" at 10
    resumed, _ = train_localizer(frames, poses, TINY, settings)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("field", "value"), [("channels", ()), ("steps", 0), ("lr", 0.0), ("heading_weight", -1.0)])
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"LocalizerConfig.{field}"):
        LocalizerConfig(**{field: value})


def test_frames_of_another_size_are_refused() -> None:
    frames, poses = _frames()
    model, _ = train_localizer(frames, poses, TINY, LoopSettings(progress=False))
    with pytest.raises(ValueError, match=f"\\(N, {HEIGHT}, {WIDTH}, 3\\)"):
        model.locate(np.zeros((2, HEIGHT + 1, WIDTH, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="poses \\(N, 4\\)"):
        train_localizer(frames, poses[:, :2], TINY)


class _Room:
    """A FloorMap stand-in: one empty 10 x 6 m room, walls at its edges, an agent of 0.4 m radius, MiniWorld's
    actions (0 turn left, 1 turn right, 2 forward 0.15 m; 15 degree turns)."""

    radius, step, turn = 0.4, 0.15, math.radians(15)
    extent = (0.0, 0.0, 10.0, 6.0)

    def standable(self, positions: np.ndarray) -> np.ndarray:
        x, z = positions[:, 0], positions[:, 1]
        return (x >= self.radius) & (x <= 10 - self.radius) & (z >= self.radius) & (z <= 6 - self.radius)

    def dead_reckon(self, poses: np.ndarray, actions: np.ndarray) -> np.ndarray:
        heading = np.arctan2(poses[:, 3], poses[:, 2]) + self.turn * ((actions == 1).astype(float) - (actions == 0))
        ahead = poses[:, :2] + self.step * (actions == 2)[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)
        position = np.where(self.standable(ahead)[:, None], ahead, poses[:, :2])
        return np.concatenate([position, np.cos(heading)[:, None], np.sin(heading)[:, None]], axis=1)


def _walk(room: _Room, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps + 1, 4) true poses and (steps,) actions of a random walk, mostly forward, often into the walls."""
    rng = np.random.default_rng(seed)
    actions = rng.choice(3, size=steps, p=[0.15, 0.15, 0.7])
    poses = [np.array(_pose(2.0, 3.0, 0.0))]
    for action in actions:
        poses.append(room.dead_reckon(poses[-1][None], np.array([action]))[0])
    return np.stack(poses), actions


def _track(pose_filter: PoseFilter, readings: np.ndarray, actions: np.ndarray) -> np.ndarray:
    tracker = pose_filter.track(_Room(), readings[0], np.random.default_rng(pose_filter.seed))
    return np.stack([tracker.estimate] + [tracker.step(int(a), r) for a, r in zip(actions, readings[1:])])


def test_pose_filter_converges_from_a_wrong_first_reading() -> None:
    room = _Room()
    poses, actions = _walk(room, 300, seed=1)
    rng = np.random.default_rng(2)
    readings = poses.copy()
    readings[:, :2] += 0.7 * rng.standard_normal((len(poses), 2))  # one frame's typical error
    readings[0] = _pose(8.0, 1.0, 120.0)  # the first frame read 6 m and 120 degrees off
    estimates = _track(PoseFilter(), readings, actions)
    errors = pose_errors(estimates[-100:], poses[-100:])
    assert pose_errors(estimates[:1], poses[:1]).position_median_m > 2.0
    assert errors.position_median_m < 0.2  # the readings' own median error is ~0.8 m
    assert errors.position_p90_m < 0.5
    assert errors.heading_p90_deg < 5.0


def test_pose_filter_holds_the_estimate_at_a_wall_the_agent_pushes_against() -> None:
    room = _Room()
    actions = np.full(40, 2)  # walk east into the east wall and keep pushing: the agent stops at x = 9.6
    poses = [np.array(_pose(8.5, 3.0, 0.0))]
    for action in actions:
        poses.append(room.dead_reckon(poses[-1][None], np.array([action]))[0])
    poses = np.stack(poses)
    assert poses[-1, 0] == pytest.approx(10 - room.radius, abs=room.step)
    readings = poses + np.array([1.0, 0.0, 0.0, 0.0])  # every frame read 1 m east, beyond the wall
    estimates = _track(PoseFilter(), readings, actions)
    assert pose_errors(estimates[-20:], poses[-20:]).position_p90_m < 0.2


@pytest.mark.parametrize(("still", "expected_x"), [(True, 9.55), (False, 5.15)])
def test_pose_filter_prefers_the_particle_that_stopped_as_the_frames_did(still: bool, expected_x: float) -> None:
    pose_filter = PoseFilter(particles=2, uniform_start=0.0, reseed=0.0)
    tracker = pose_filter.track(_Room(), np.array(_pose(7.35, 3.0, 0.0)), np.random.default_rng(0))
    tracker.poses = np.array([[9.55, 3.0, 0.0], [5.0, 3.0, 0.0]])  # one against the east wall, one in open floor
    tracker.weights = np.full(2, 0.5)
    estimate = tracker.step(2, np.array(_pose(7.35, 3.0, 0.0)), still=still)  # forward; read halfway between
    assert estimate[0] == pytest.approx(expected_x, abs=0.5)


@pytest.mark.parametrize(("mode_radius", "expected_x"), [(0.3, 3.0), (0.0, 3.8)])
def test_the_estimate_is_the_main_mode_not_the_mean_between_two(mode_radius: float, expected_x: float) -> None:
    # beside a doorway the particles split between its two jambs: their mean lies in the gap, where neither is
    pose_filter = PoseFilter(particles=100, uniform_start=0.0, reseed=0.0, mode_radius=mode_radius)
    tracker = pose_filter.track(_Room(), np.array(_pose(3.0, 3.0, 0.0)), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    tracker.poses = np.concatenate([np.tile([3.0, 3.0, 0.0], (60, 1)), np.tile([5.0, 3.0, 0.0], (40, 1))])
    tracker.poses[:, :2] += 0.05 * rng.standard_normal((100, 2))
    tracker.weights = np.full(100, 0.01)
    estimate = tracker.step(1, np.array(_pose(4.0, 3.0, 15.0)), still=False)  # a turn; read between the two
    assert estimate[0] == pytest.approx(expected_x, abs=0.1)


@pytest.mark.parametrize(("rescue_below", "stopped"), [(0.5, True), (0.0, False)])
def test_a_step_no_particle_explains_redraws_particles_that_do(rescue_below: float, stopped: bool) -> None:
    # the body pushes against the east wall (it stops at x = 9.6) while every particle, 0.5 m short of it, steps on
    pose_filter = PoseFilter(particles=200, uniform_start=0.0, reseed=0.0, rescue_below=rescue_below)
    tracker = pose_filter.track(_Room(), np.array(_pose(9.1, 3.0, 0.0)), np.random.default_rng(0))
    tracker.poses = np.tile([9.1, 3.0, 0.0], (200, 1))
    tracker.poses[:, 1] += 0.05 * np.random.default_rng(1).standard_normal(200)
    tracker.weights = np.full(200, 1 / 200)
    estimate = tracker.step(2, np.array(_pose(9.1, 3.0, 0.0)), still=True)
    assert (estimate[0] > 9.4) == stopped  # towards where a forward step stops at the wall, or 0.15 m on from 9.1
    if not stopped:
        assert estimate[0] == pytest.approx(9.25, abs=0.01)


def test_after_a_refused_step_the_estimate_is_a_pose_where_it_is_refused() -> None:
    # every particle explains the stall, half against the east wall facing east, half against the north wall facing
    # north; their mean (the middle of the room, facing north-east) would take the step freely
    room = _Room()
    pose_filter = PoseFilter(particles=100, uniform_start=0.0, reseed=0.0, mode_radius=0.0, rescue_below=0.0)
    tracker = pose_filter.track(room, np.array(_pose(6.0, 4.0, 45.0)), np.random.default_rng(0))
    tracker.poses = np.concatenate([np.tile([9.55, 3.0, 0.0], (50, 1)), np.tile([3.0, 5.55, math.pi / 2], (50, 1))])
    tracker.weights = np.full(100, 0.01)
    estimate = tracker.step(2, np.array(_pose(6.0, 4.0, 45.0)), still=True)
    assert any(np.allclose(estimate, _pose(x, z, h)) for x, z, h in ((9.55, 3.0, 0.0), (3.0, 5.55, 90.0)))
    assert np.array_equal(room.dead_reckon(estimate[None], np.array([2]))[0, :2], estimate[:2])


def test_a_particle_stopped_at_a_wall_stays_put_whatever_its_heading_round_trip() -> None:
    # headings whose arctan2(sin, cos) round trip changes their last bit, and ones jitter took past pi: facing the
    # east or west wall from against it, a forward step leaves each where it was
    headings = np.linspace(-0.3, 0.3, 2001)
    changed = headings[np.arctan2(np.sin(headings), np.cos(headings)) != headings]
    assert len(changed) > 0
    facing_west = np.array([math.pi + 0.01, -math.pi - 0.01, math.pi])
    poses = np.concatenate(
        [np.stack([np.full(len(changed), 9.55), np.full(len(changed), 3.0), changed], 1),
         np.stack([np.full(3, 0.45), np.full(3, 3.0), facing_west], 1)]
    )  # fmt: skip
    tracker = PoseFilter(particles=2).track(_Room(), np.array(_pose(5.0, 3.0, 0.0)), np.random.default_rng(0))
    after, stayed = tracker._moved(poses, 2)
    assert stayed.all()
    assert np.array_equal(after[:, :2], poses[:, :2])
    assert not tracker._moved(poses, 0)[1].any()  # a turn moves every one


@pytest.mark.parametrize(
    ("field", "value"),
    [("particles", 1), ("position_sigma", 0.0), ("temper", 0.0), ("outlier", -0.1), ("reseed", 1.0),
     ("uniform_start", -0.5), ("mode_radius", -0.1), ("rescue_below", 1.0), ("rescue_sigma", 0.0)],
)  # fmt: skip
def test_bad_filter_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"PoseFilter.{field}"):
        PoseFilter(**{field: value})
