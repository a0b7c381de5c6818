"""Sub-trajectory diffusion generator: windows from episodes, a few training steps, DDIM/DDPM sampling shapes,
range and start pinning, seeded determinism, exact save/load and refusal of foreign checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mstt.skills.checkpoint import CheckpointError
from mstt.skills.critic import CriticConfig, MaskedCritic
from mstt.skills.generator import (
    GeneratorConfig,
    GeneratorReport,
    TrajectoryGenerator,
    generator_windows,
    train_generator,
)

STATE_DIM, ACTION_DIM, HORIZON = 4, 2, 6
Trained = tuple[TrajectoryGenerator, GeneratorReport, np.ndarray, np.ndarray]



def tiny_config(**overrides: object) -> GeneratorConfig:
    values: dict[str, object] = dict(
        horizon=HORIZON,
        hidden=16,
        depth=2,
        norm_groups=4,
        cond_dim=32,
        timestep_embed_dim=16,
        lr=2e-3,
        warmup_steps=0,
        lr_schedule="constant",
        batch_size=64,
        steps=60,
        log_every=20,
        device="cpu",
    )
    values.update(overrides)
    return GeneratorConfig(**values)  # type: ignore[arg-type]


def episodes(n: int = 4, length: int = 30, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Point-mass-like episodes: positions integrate velocities, velocities follow noisy actions."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        actions = np.clip(rng.normal(0.3, 0.5, size=(length, ACTION_DIM)), -1, 1)
        obs = np.zeros((length + 1, STATE_DIM))
        for t in range(length):
            obs[t + 1, 2:] = 0.8 * obs[t, 2:] + 0.2 * actions[t]
            obs[t + 1, :2] = obs[t, :2] + 0.1 * obs[t + 1, 2:]
        out.append({"observations": obs.astype(np.float32), "actions": actions.astype(np.float32)})
    return out


@pytest.fixture(scope="module")
def trained() -> Trained:
    windows, starts = generator_windows(episodes(), HORIZON, stride=2)
    generator, report = train_generator(windows, starts, tiny_config(), progress=False)
    return generator, report, windows, starts


def test_generator_windows_pair_observations_with_their_actions() -> None:
    eps = episodes(n=2, length=10)
    windows, starts = generator_windows(eps, HORIZON, stride=2)
    per_episode = (10 - HORIZON) // 2 + 1
    assert windows.shape == (2 * per_episode, HORIZON, STATE_DIM + ACTION_DIM)
    np.testing.assert_array_equal(windows[1, :, :STATE_DIM], eps[0]["observations"][2 : 2 + HORIZON])
    np.testing.assert_array_equal(windows[1, :, STATE_DIM:], eps[0]["actions"][2 : 2 + HORIZON])
    np.testing.assert_array_equal(starts, windows[:, 0, :STATE_DIM])


def test_training_reduces_the_noise_prediction_loss(trained: Trained) -> None:
    generator, report, _, _ = trained
    assert report.steps == 60 and len(report.losses) == 3
    assert np.isfinite(report.final_loss) and report.losses[-1] < report.losses[0]
    assert not generator.training


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_ddim_with_k_steps_samples_the_right_shapes_inside_the_data_range(trained: Trained, steps: int) -> None:
    generator, _, windows, starts = trained
    states = torch.as_tensor(starts[:3])
    tau = generator.sample(states, 5, steps=steps, generator=torch.Generator().manual_seed(0))
    assert tau.shape == (3, 5, HORIZON, STATE_DIM + ACTION_DIM)
    assert torch.isfinite(tau).all()
    # pin_start: every candidate starts at its state
    torch.testing.assert_close(tau[:, :, 0, :STATE_DIM], states[:, None].expand(-1, 5, -1))
    # the schedulers clip the x0 estimate to [-1, 1], i.e. to the data's per-dimension range
    low, high = windows.reshape(-1, windows.shape[-1]).min(0), windows.reshape(-1, windows.shape[-1]).max(0)
    body = tau[:, :, 1:].reshape(-1, tau.shape[-1]).numpy()
    assert (body >= low - 1e-4).all() and (body <= high + 1e-4).all()


def test_full_ddpm_sampling_and_seeded_determinism(trained: Trained) -> None:
    generator, _, _, starts = trained
    states = torch.as_tensor(starts[:2])
    ddpm = generator.sample_ddpm(states, 3, generator=torch.Generator().manual_seed(1))
    assert ddpm.shape == (2, 3, HORIZON, STATE_DIM + ACTION_DIM) and torch.isfinite(ddpm).all()
    first = generator.sample(states, 4, generator=torch.Generator().manual_seed(7))
    again = generator.sample(states, 4, generator=torch.Generator().manual_seed(7))
    other = generator.sample(states, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ValueError, match="steps"):
        generator.sample(states, 1, steps=0)


def test_save_load_gives_identical_samples(trained: Trained, tmp_path: Path) -> None:
    generator, _, _, starts = trained
    generator.save_pretrained(tmp_path / "generator")
    loaded = TrajectoryGenerator.from_pretrained(tmp_path / "generator", device="cpu")
    states = torch.as_tensor(starts[:3])
    expected = generator.sample(states, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(expected, loaded.sample(states, 4, generator=torch.Generator().manual_seed(3)))
    assert loaded.config == generator.config
    for name, buffer in generator.named_buffers():
        assert torch.equal(buffer, dict(loaded.named_buffers())[name])


def test_generator_refuses_a_critic_checkpoint(tmp_path: Path) -> None:
    config = CriticConfig(hidden=8, layers=1, device="cpu")
    critic = MaskedCritic(config, state_dim=4, goal_dim=2, num_skills=5, horizon=3)
    critic.save_pretrained(tmp_path / "critic")
    with pytest.raises(CheckpointError, match="kind"):
        TrajectoryGenerator.from_pretrained(tmp_path / "critic")


def test_goal_conditioned_generator_needs_goals() -> None:
    windows, starts = generator_windows(episodes(n=1), HORIZON)
    goals = windows[:, -1, :2]
    config = tiny_config(goal_conditioned=True, steps=2, batch_size=8)
    with pytest.raises(ValueError, match="goal"):
        train_generator(windows, starts, config, progress=False)
    generator, _ = train_generator(windows, starts, config, goals=goals, progress=False)
    tau = generator.sample(torch.as_tensor(starts[:2]), 3, goals=torch.as_tensor(goals[:2]), steps=2)
    assert tau.shape == (2, 3, HORIZON, STATE_DIM + ACTION_DIM)
    with pytest.raises(ValueError, match="goal"):
        generator.sample(torch.as_tensor(starts[:2]), 3)


def test_odd_horizons_and_flat_u_nets_work() -> None:
    for horizon, depth in ((5, 2), (7, 0)):
        config = tiny_config(horizon=horizon, depth=depth)
        model = TrajectoryGenerator(config, STATE_DIM, ACTION_DIM)
        tau = model.sample(torch.zeros(2, STATE_DIM), 2, steps=2)
        assert tau.shape == (2, 2, horizon, STATE_DIM + ACTION_DIM)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="inference_steps"):
        GeneratorConfig(train_timesteps=50, inference_steps=60)
    with pytest.raises(ValueError, match="norm_groups"):
        GeneratorConfig(hidden=10, norm_groups=4)
    with pytest.raises(ValueError, match="warmup_steps"):
        GeneratorConfig(steps=10, warmup_steps=20)
    with pytest.raises(ValueError, match="beta_schedule"):
        GeneratorConfig(beta_schedule="cubic")
