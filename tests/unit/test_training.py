"""The shared training loop: checkpoints and resumption give the same model as one straight run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import mstt.skills.generator as generator_module
import mstt.skills.training as training
from mstt.skills.bc import BCConfig, BCPolicy, train_bc
from mstt.skills.generator import GeneratorConfig, train_generator
from mstt.skills.training import LoopSettings


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


def test_generator_resumes_mid_training(tmp_path: Path) -> None:

    rng = np.random.default_rng(1)
    windows = rng.normal(size=(300, 4, 3)).astype(np.float32)
    starts = windows[:, 0, :2].copy()
    config = GeneratorConfig(horizon=4, denoiser="mlp", mlp_hidden=32, steps=30, batch_size=32,
                             warmup_steps=2, log_every=5, device="cpu")  # fmt: skip
    straight, _ = train_generator(windows, starts, config, progress=False)
    settings = LoopSettings(directory=tmp_path / "loop", checkpoint_every=5, progress=False)
    # The LR schedule depends on the total steps, so the "killed" run must share it: stop it by
    # raising inside the loop after step 15 instead of shortening it.

    real_run_loop = training.run_loop
    calls = {"n": 0}

    def killing_step_loop(name, accelerator, steps, step_fn, stateful, s, log_every=50):  # type: ignore[no-untyped-def]
        def step(i: int):  # type: ignore[no-untyped-def]
            if i == 15:
                raise KeyboardInterrupt
            calls["n"] += 1
            return step_fn(i)

        return real_run_loop(name, accelerator, steps, step, stateful, s, log_every)


    generator_module.run_loop = killing_step_loop  # type: ignore[assignment]
    try:
        try:
            train_generator(windows, starts, config, progress=False, settings=settings)
        except KeyboardInterrupt:
            pass
    finally:
        generator_module.run_loop = real_run_loop  # type: ignore[assignment]
    assert calls["n"] == 15
    resumed, _ = train_generator(windows, starts, config, progress=False, settings=settings)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
