"""Egocentric frames of the house with the poses they were seen from: the localizer's training data (source house
only) and its test frames (held-out source poses, each target variant).

Poses are states of the noisy expert's stream (HouseTask.source_episodes, the source data's recipe), one every
``every`` steps; each frame is rendered by placing the agent at its pose, so a frame is exactly what the env shows
there. A frame set is stored as one compressed npz (frames, poses, and the record of what shaped it): frames are
no transitions (no actions, no rewards, poses not consecutive), which Minari's episode layout would have to fake.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from tqdm import tqdm

from mstt.agent.core.config import Settings, config_file
from mstt.agent.core.io import RESULT_FILE_MODE, check_writable, sigterm_as_interrupt
from mstt.agent.worlds.house import HouseTask, house_env

FRAMES_DIR = "house-frames"
"""Folder of the stored frame sets under the experiment's datasets root (data.root)."""
RECORD_KEY = "record"
"""npz entry holding the JSON record of what shaped the frames (the variant config, count, spacing, seed)."""


class FrameSettings(Settings):
    """How many egocentric frames to render, from which poses."""

    frames: int = Field(default=30_000, gt=0)
    """Frames of the source house to train on (about 4 KB each, compressed)."""
    every: int = Field(default=4, gt=0)
    """One pose every this many steps of the expert's stream: consecutive steps see nearly the same picture."""
    seed: int = 7
    """Seed of the expert's stream the training poses come from (the source dataset's is another)."""
    report_frames: int = Field(default=2_000, gt=0)
    """Frames per variant in the localizer's error report (`mstt bench localizer`)."""
    report_seed: int = 8
    """Seed of the report's streams: its source frames are held out from training."""


@dataclass(frozen=True)
class FrameSet:
    """Egocentric frames and the poses they were rendered at."""

    frames: np.ndarray
    """(N, H, W, 3) uint8, H x W the variant's egocentric size."""
    poses: np.ndarray
    """(N, 4) float32 (x, z, cos h, sin h): the env's observation at the pose."""
    record: dict[str, Any]
    """What shaped the frames (``frame_record``)."""

    def __len__(self) -> int:
        return len(self.poses)


def frame_record(task: HouseTask, count: int, every: int, seed: int) -> dict[str, Any]:
    """Everything that shapes a frame set, as plain JSON: the whole variant (walls, furniture, zones and textures all
    show in a frame) and the count, spacing and seed of its poses."""
    return {"house": task.config.model_dump(mode="json"), "frames": count, "every": every, "seed": seed}


def expert_stream(task: HouseTask, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` steps of the noisy expert's stream in this variant (seeded by ``seed``; it never renders):
    (steps + 1, 4) poses (x, z, cos h, sin h) and the (steps,) int64 actions between them."""
    episodes = list(task.source_episodes(steps, seed))
    poses = [episodes[0].observations["observation"][:1]] + [e.observations["observation"][1:] for e in episodes]
    return np.concatenate(poses), np.concatenate([e.actions for e in episodes])  # episodes are cuts of one stream


def stream_poses(task: HouseTask, count: int, every: int, seed: int) -> np.ndarray:
    """(count, 4) poses (x, z, cos h, sin h): the pose after every ``every``-th step of the expert's stream."""
    poses, _ = expert_stream(task, count * every, seed)
    return poses[every::every]


def render_frames(task: HouseTask, poses: np.ndarray, progress: bool = False) -> np.ndarray:
    """(N, 4) poses -> (N, H, W, 3) uint8 egocentric frames, the agent placed at each pose in turn."""
    config = task.config.egocentric
    frames = np.empty((len(poses), config.height, config.width, 3), dtype=np.uint8)
    env = task.make_env(render_mode="rgb_array")
    try:
        sim = house_env(env)
        sim.reset(seed=0)
        for i, (x, z, cos_h, sin_h) in enumerate(tqdm(poses.tolist(), desc="frames", disable=not progress)):
            sim.agent.pos = np.array([x, 0.0, z])
            sim.agent.dir = -math.atan2(sin_h, cos_h)  # MiniWorld's dir turns the other way (HouseEnv.observation)
            frames[i] = task.render_egocentric(env)
    finally:
        env.close()
    return frames


def collect_frames(task: HouseTask, count: int, every: int, seed: int, progress: bool = False) -> FrameSet:
    """``count`` egocentric frames of this variant at poses of the expert's stream (``stream_poses``)."""
    poses = stream_poses(task, count, every, seed).astype(np.float32)  # rendered as stored: re-rendering is exact
    return FrameSet(render_frames(task, poses, progress), poses, frame_record(task, count, every, seed))


def frames_path(root: Path, task: HouseTask, count: int, seed: int) -> Path:
    """Where a stored frame set of this variant lives under the datasets root."""
    return root / FRAMES_DIR / f"{task.config.name}-{task.config.variant}-{count}-seed{seed}.npz"


def save_frames(frames: FrameSet, path: Path) -> Path:
    """Write a frame set as one compressed npz, through a temp file and a rename (a crash leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, frames=frames.frames, poses=frames.poses, record=json.dumps(frames.record))
        os.chmod(tmp, RESULT_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_frames(path: Path, expected: dict[str, Any] | None = None) -> FrameSet:
    """Read a stored frame set; ``expected`` (a frame_record): refuse one shaped otherwise, naming the file."""
    with np.load(path) as stored:
        record = json.loads(str(stored[RECORD_KEY]))
        if expected is not None and record != expected:
            differs = sorted(key for key in record.keys() | expected.keys() if record.get(key) != expected.get(key))
            raise ValueError(
                f"{path} was rendered with other {differs} than the config asks for: delete it and it is rendered anew"
            )
        return FrameSet(stored["frames"], stored["poses"], record)


def source_frames(task: HouseTask, settings: FrameSettings, root: Path, progress: bool = False) -> FrameSet:
    """The localizer's training frames of the SOURCE house: loaded from under ``root``, rendered first if missing."""
    if task.config.role != "source":
        raise ValueError(
            f"{config_file(task.config)}: variant '{task.config.variant}' is a {task.config.role} world: the localizer "
            "trains on frames of the source world only"
        )
    expected = frame_record(task, settings.frames, settings.every, settings.seed)
    path = frames_path(root, task, settings.frames, settings.seed)
    if path.exists():
        return load_frames(path, expected)
    check_writable(path.parent, "data.root", "folder")
    if progress:
        print(f"frames {path.name} not under {path.parent}: rendering {settings.frames} frames first")
    with sigterm_as_interrupt():
        frames = collect_frames(task, settings.frames, settings.every, settings.seed, progress)
        save_frames(frames, path)
    return frames


__all__ = ["FRAMES_DIR", "FrameSet", "FrameSettings", "collect_frames", "expert_stream", "frame_record", "frames_path",
           "load_frames", "render_frames", "save_frames", "source_frames", "stream_poses"]  # fmt: skip
