"""Videos of episodes (agent/experiments/controllers.py): the one writer (`write_video`) and filming inside a
rollout, which renders the first episodes and changes none of them. `mstt eval --video` on a trained run:
tests/e2e/test_eval_videos.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mstt.agent.experiments.controllers as controllers
from mstt.agent.experiments.controllers import Filming, PolicyController, make_vector_env, rollout, write_video
from mstt.agent.worlds import load_config, make_task

from repo_paths import CONFIGS

EPISODE_STEPS = 12
SIZE = 64


@pytest.fixture(scope="module")
def short_t1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "t1_short.yaml"
    path.write_text(f"extends: {CONFIGS / 'maze/t1.yaml'}\nepisode_steps: {EPISODE_STEPS}\n"
                    f"render: {{width: {SIZE}, height: {SIZE}}}\n")  # fmt: skip
    return path


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((SIZE, SIZE, 3), 20 * i, dtype=np.uint8) for i in range(n)]


def test_write_video_writes_every_frame_whole(tmp_path: Path) -> None:
    path = write_video(_frames(5), tmp_path / "deep" / "clip.gif")
    assert path == tmp_path / "deep" / "clip.gif" and list(path.parent.iterdir()) == [path]  # no temporary left
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (SIZE, SIZE)


def test_an_mp4_without_the_ffmpeg_plugin_is_written_as_a_gif(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controllers, "mp4_available", lambda: False)
    assert write_video(_frames(2), tmp_path / "clip.mp4") == tmp_path / "clip.gif"


def test_no_frames_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "clip.gif")
    assert list(tmp_path.iterdir()) == []


def _towards_goal(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return np.clip(goal - obs[:, :2], -1.0, 1.0)


def test_filming_renders_the_first_episodes_and_changes_none(short_t1: Path) -> None:
    task = make_task(load_config(short_t1))
    saved: dict[int, list[np.ndarray]] = {}
    plain_env, filmed_env = make_vector_env(task, 2), make_vector_env(task, 2, render_mode="rgb_array")
    try:
        plain = rollout(task, plain_env, PolicyController(_towards_goal), 5, seed=3, record=True)
        filming = Filming(3, lambda e: task.render_frame(filmed_env.envs[e]), saved.__setitem__, every=4)
        filmed = rollout(task, filmed_env, PolicyController(_towards_goal), 5, seed=3, record=True, filming=filming)
    finally:
        plain_env.close()
        filmed_env.close()
    for a, b in zip(plain, filmed, strict=True):
        assert a.path is not None and b.path is not None and np.array_equal(a.path, b.path)
        assert (a.success, a.episode_return, a.cost) == (b.success, b.episode_return, b.cost)
    assert sorted(saved) == [0, 1, 2]  # episodes 0, 1 (first batch) and 2 (env 0 of the second)
    for frames in saved.values():
        assert len(frames) == 1 + EPISODE_STEPS // 4 and frames[0].shape == (SIZE, SIZE, 3)
    assert not np.array_equal(saved[0][0], saved[0][-1])  # the agent moved: frames of the env as it is stepped
