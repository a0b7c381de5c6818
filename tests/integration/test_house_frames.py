"""Egocentric frames of the house (agent/worlds/house_frames.py): the poses are the expert's, each frame is what the
env shows at its pose, a seed gives the same frames again, and a stored set loads back exactly or is refused when
the house it shows changed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.house import FORWARD_STEP, HouseTask
from mstt.agent.worlds.house_frames import (
    FrameSettings,
    collect_frames,
    frames_path,
    load_frames,
    source_frames,
    stream_poses,
)

COUNT, EVERY, SEED = 24, 4, 3


def _task(configs: Path, variant: str) -> HouseTask:
    task = make_task(load_config(configs / f"house/{variant}.yaml"))
    assert isinstance(task, HouseTask)
    return task


def test_frames_have_the_egocentric_size_and_free_floor_poses(configs: Path) -> None:
    task = _task(configs, "source")
    frames = collect_frames(task, COUNT, EVERY, SEED)
    size = task.config.egocentric
    assert frames.frames.shape == (COUNT, size.height, size.width, 3) and frames.frames.dtype == np.uint8
    assert frames.poses.shape == (COUNT, 4) and frames.poses.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(frames.poses[:, 2:], axis=1), 1.0, rtol=1e-6)
    assert not task.outside(frames.poses[:, :2].astype(np.float64)).any()
    assert frames.frames.std(axis=(1, 2, 3)).min() > 0  # every frame shows something, not a blank buffer


def test_poses_are_every_kth_state_of_the_expert_stream(configs: Path) -> None:
    task = _task(configs, "source")
    poses = stream_poses(task, COUNT, EVERY, SEED)
    step = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1)
    assert step.max() <= EVERY * FORWARD_STEP + 1e-9  # at most EVERY forward steps apart
    assert step.mean() > 0  # the expert walks


def test_a_frame_is_what_the_env_shows_at_its_pose(configs: Path) -> None:
    task = _task(configs, "source")
    frames = collect_frames(task, COUNT, EVERY, SEED)
    env = task.make_env(render_mode="rgb_array")
    try:
        for i in (0, COUNT // 2, COUNT - 1):
            x, z, cos_h, sin_h = frames.poses[i].astype(np.float64)
            obs, _ = env.reset(seed=i, options={"start": [x, z], "heading": math.atan2(sin_h, cos_h)})
            np.testing.assert_allclose(obs["observation"], frames.poses[i], atol=1e-6)
            np.testing.assert_array_equal(task.render_egocentric(env), frames.frames[i])
    finally:
        env.close()


def test_the_same_seed_gives_the_same_frames_and_another_seed_others(configs: Path) -> None:
    task = _task(configs, "source")
    first, again = collect_frames(task, COUNT, EVERY, SEED), collect_frames(task, COUNT, EVERY, SEED)
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.poses, again.poses)
    other = collect_frames(task, COUNT, EVERY, SEED + 1)
    assert not np.array_equal(first.poses, other.poses)


def test_source_frames_are_stored_once_and_load_back_exactly(configs: Path, tmp_path: Path) -> None:
    task = _task(configs, "source")
    settings = FrameSettings(frames=COUNT, every=EVERY, seed=SEED)
    made = source_frames(task, settings, tmp_path)
    path = frames_path(tmp_path, task, COUNT, SEED)
    assert path.is_file()
    loaded = source_frames(task, settings, tmp_path)
    np.testing.assert_array_equal(loaded.frames, made.frames)
    np.testing.assert_array_equal(loaded.poses, made.poses)
    assert loaded.record == made.record


def test_stored_frames_of_another_house_are_refused(configs: Path, tmp_path: Path) -> None:
    source = _task(configs, "source")
    settings = FrameSettings(frames=COUNT, every=EVERY, seed=SEED)
    source_frames(source, settings, tmp_path)
    moved = source.config.model_copy(update={"egocentric": source.config.egocentric.model_copy(update={"width": 40})})
    with pytest.raises(ValueError, match=r"other \['house'\]"):
        source_frames(HouseTask(moved), settings, tmp_path)
    with pytest.raises(ValueError, match="house"):
        load_frames(frames_path(tmp_path, source, COUNT, SEED), {"frames": COUNT})


def test_training_frames_come_from_the_source_world_only(configs: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target world"):
        source_frames(_task(configs, "blocked"), FrameSettings(frames=COUNT), tmp_path)
