"""The shared training loop: checkpoints and resumption give the same model as one straight run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skills.bc import BCConfig, BCPolicy, train_bc
from skills.training import LoopSettings


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(500, 4)).astype(np.float32)
    goals = rng.normal(size=(500, 2)).astype(np.float32)
    actions = np.tanh(obs[:, :2] - goals).astype(np.float32)
    return obs, goals, actions


def test_resumed_training_equals_uninterrupted(tmp_path: Path) -> None:
    obs, goals, actions = _data()
    config = BCConfig(hidden=32, layers=2, steps=40, batch_size=64, device="cpu")
    straight = train_bc(obs, goals, actions, config, LoopSettings(progress=False))
    # "Killed" after 20 steps: a run with steps=20 leaves its checkpoint, the next run resumes it.
    settings = LoopSettings(directory=tmp_path / "loop", checkpoint_every=10, progress=False)
    train_bc(obs, goals, actions, BCConfig(**{**config.__dict__, "steps": 20}), settings)
    resumed = train_bc(obs, goals, actions, config, settings)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_bc_learns_and_round_trips(tmp_path: Path) -> None:
    obs, goals, actions = _data()
    policy = train_bc(obs, goals, actions, BCConfig(hidden=64, steps=400, device="cpu"),
                      LoopSettings(progress=False))  # fmt: skip
    error = np.abs(policy.act(obs, goals) - actions).mean()
    assert error < 0.5 * np.abs(actions).mean()
    loaded = BCPolicy.from_pretrained(policy.save_pretrained(tmp_path / "bc"))
    np.testing.assert_array_equal(loaded.act(obs, goals), policy.act(obs, goals))
