"""The frame -> pose localizer (skills/localizer.py): its error measure, an exact save/load round trip, a resumed
training equal to a straight one, the filter that fuses readings with dead reckoning, and clear refusals of bad
configs and inputs."""

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


def test_pose_filter_takes_a_share_of_the_gap_and_bounds_an_outlier() -> None:
    pose_filter = PoseFilter(gain=0.5, gate=1.0, heading_gain=0.5)
    predicted = np.array([_pose(0, 0, 170), _pose(0, 0, 0)])
    read = np.array([_pose(0.4, 0, -170), _pose(10, 0, 0)])  # near and 20 degrees across the wrap; 10 m off
    fused = pose_filter.fuse(predicted, read)
    np.testing.assert_allclose(fused[0], _pose(0.2, 0, 180), atol=1e-9)  # half the gap, heading through 180
    np.testing.assert_allclose(fused[1], _pose(0.5, 0, 0), atol=1e-9)  # the 10 m gap pulls like a 1 m one


@pytest.mark.parametrize(("field", "value"), [("gain", 0.0), ("heading_gain", 1.5), ("gate", 0.0)])
def test_bad_filter_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"PoseFilter.{field}"):
        PoseFilter(**{field: value})
