"""Collect -> Minari -> load round trip, determinism, and no partial dataset on failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.data import collect, load_episodes


def test_collect_load_round_trip(configs: Path, tmp_path: Path) -> None:
    task = make_task(load_config(configs / "maze/source.yaml"))
    summary = collect(task, transitions=2500, out=tmp_path, seed=3, progress=False)
    assert summary.transitions == 2500 and summary.episodes == 3
    episodes = load_episodes(task.dataset_id, tmp_path)
    assert [len(e.actions) for e in episodes] == [1000, 1000, 500]
    for e in episodes:
        assert e.observations.shape == (len(e.actions) + 1, 4)
        assert e.achieved_goal.shape == e.desired_goal.shape == (len(e.actions) + 1, 2)
        assert e.actions.dtype == np.float32 and np.abs(e.actions).max() <= 1.0
        assert all(np.isfinite(a).all() for a in (e.observations, e.actions, e.rewards))
        assert e.truncations[-1] and not e.truncations[:-1].any() and not e.terminations.any()
        np.testing.assert_allclose(e.observations[:, :2], e.achieved_goal)
    # The stream is never reset: each episode starts where the previous one ended.
    for prev, nxt in zip(episodes, episodes[1:]):
        np.testing.assert_array_equal(prev.observations[-1], nxt.observations[0])


def test_same_seed_same_data(configs: Path, tmp_path: Path) -> None:
    task = make_task(load_config(configs / "maze/source.yaml"))
    runs = [list(task.source_episodes(1200, seed=7)) for _ in range(2)]
    other = list(task.source_episodes(1200, seed=8))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.observations["observation"], b.observations["observation"])
    assert not np.array_equal(runs[0][0].actions, other[0].actions)


def test_target_world_data_is_refused(configs: Path, tmp_path: Path) -> None:
    task = make_task(load_config(configs / "maze/t1.yaml"))
    with pytest.raises(ValueError, match="only ever collected in the source"):
        collect(task, transitions=10, out=tmp_path, progress=False)


def test_failed_collect_leaves_nothing(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = make_task(load_config(configs / "maze/source.yaml"))
    collect(task, transitions=1000, out=tmp_path, progress=False)
    before = load_episodes(task.dataset_id, tmp_path)

    def broken(transitions: int, seed: int):  # type: ignore[no-untyped-def]
        yield from type(task).source_episodes(task, 1000, seed)
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "source_episodes", broken)
    with pytest.raises(KeyboardInterrupt):
        collect(task, transitions=2000, out=tmp_path, progress=False)
    # The old dataset is untouched and no staging folder is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mstt"]
    after = load_episodes(task.dataset_id, tmp_path)
    np.testing.assert_array_equal(before[0].actions, after[0].actions)


def test_fetch_collect_round_trip(configs: Path, tmp_path: Path) -> None:
    task = make_task(load_config(configs / "fetch/source.yaml"))
    collect(task, transitions=200, out=tmp_path, progress=False)
    episodes = load_episodes(task.dataset_id, tmp_path)
    assert len(episodes) == 4
    assert episodes[0].observations.shape == (51, 10) and episodes[0].actions.shape == (50, 4)
