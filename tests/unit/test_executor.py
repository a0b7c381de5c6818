"""The DDS executor of MSTT's plans (eval method mstt_dds): one encoding per decision, one decoder call per step,
and the optional executor_dds section of an experiment config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mstt.agent.core.config import ConfigError
from mstt.agent.experiments.controllers import SkillExecutorController
from mstt.agent.experiments.experiment import DEFAULT_METHODS, load_experiment
from mstt.skills.action_decoder import ActionDecoderConfig
from mstt.skills.dds import DDSConfig, DDSSkills, train_skills
from mstt.skills.dds_encoder import SkillEncoderConfig

S, A, H, H_DDS, E = 4, 2, 6, 3, 3


@pytest.fixture(scope="module")
def skills() -> DDSSkills:
    config = DDSConfig(
        encoder=SkillEncoderConfig(horizon=H_DDS, codebook_size=4, code_dim=8, width=16, layers=1, heads=2,
                                   kmeans_iters=2, kmeans_init_samples=64, threshold_ema_dead_code=1.0),
        decoder=ActionDecoderConfig(hidden=16, blocks=1, train_timesteps=10, inference_steps=2, timestep_embed_dim=8),
        skill_steps=2, skill_batch_size=16, usage_samples=64, device="cpu",
    )  # fmt: skip
    windows = np.random.default_rng(0).normal(size=(64, H_DDS, S + A)).astype(np.float32)
    model, _ = train_skills(windows, config, S, progress=False)
    return model


class CountingPlanner:
    """Stands in for SkillPlanner.plan: a fresh random (E, H, S + A) candidate per env at every call."""

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []
        self.trajectories: list[torch.Tensor] = []

    def plan(self, states: torch.Tensor, masks: torch.Tensor, goals: torch.Tensor) -> SimpleNamespace:
        self.calls.append(states.clone())
        trajectory = torch.randn(states.shape[0], H, S + A)
        self.trajectories.append(trajectory)
        return SimpleNamespace(trajectory=trajectory, used_fallback=torch.zeros(states.shape[0], dtype=torch.bool))


def _obs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"observation": rng.normal(size=(E, S)), "desired_goal": rng.normal(size=(E, 2))}


def test_encodes_once_per_decision_and_decodes_every_step(
    skills: DDSSkills, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = CountingPlanner()
    encoded: list[torch.Tensor] = []
    decoded: list[tuple[torch.Tensor, torch.Tensor]] = []
    encode, sample = skills.encoder.encode, skills.decoder.sample

    def counting_encode(windows: torch.Tensor) -> torch.Tensor:
        encoded.append(windows.clone())
        return encode(windows)

    def counting_sample(states: torch.Tensor, codes: torch.Tensor, **kwargs: object) -> torch.Tensor:
        decoded.append((states.clone(), codes.clone()))
        return sample(states, codes, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(skills.encoder, "encode", counting_encode)
    monkeypatch.setattr(skills.decoder, "sample", counting_sample)
    controller = SkillExecutorController(planner.plan, torch.ones(4, dtype=torch.bool), skills, seed=0)
    rng = np.random.default_rng(1)
    first = _obs(rng)
    controller.reset(first)
    steps = 2 * H_DDS + 1  # decisions at steps 0, H_dds and 2 H_dds
    observations = [first] + [_obs(rng) for _ in range(steps - 1)]
    for obs in observations:
        actions = controller.act(obs)
        assert actions.shape == (E, A) and np.isfinite(actions).all()

    assert len(planner.calls) == len(encoded) == 3 and controller.decisions == 3 * E
    for window, trajectory in zip(encoded, planner.trajectories):
        assert torch.equal(window, trajectory[:, :H_DDS])  # the chosen candidate's first H_dds steps
    assert torch.equal(planner.calls[1], torch.as_tensor(observations[H_DDS]["observation"], dtype=torch.float32))
    assert len(decoded) == steps  # one batched decoder call per step for all envs, closed loop on the current state
    for (states, codes), obs in zip(decoded, observations):
        assert torch.equal(states, torch.as_tensor(obs["observation"], dtype=torch.float32))
        assert codes.shape == (E, skills.config.encoder.code_dim)
    for t in range(steps):  # one skill held for H_dds steps
        assert torch.equal(decoded[t][1], decoded[t - t % H_DDS][1])
    assert controller.fallback_rate == 0.0

    controller.reset(first)  # a new batch of episodes decides at once
    controller.act(first)
    assert len(planner.calls) == 4


def test_refuses_plans_shorter_than_the_skill(skills: DDSSkills) -> None:
    def short_plan(states: torch.Tensor, masks: torch.Tensor, goals: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(trajectory=torch.zeros(states.shape[0], H_DDS - 1, S + A),
                               used_fallback=torch.zeros(states.shape[0], dtype=torch.bool))  # fmt: skip

    controller = SkillExecutorController(short_plan, torch.ones(4, dtype=torch.bool), skills)
    obs = _obs(np.random.default_rng(0))
    controller.reset(obs)
    with pytest.raises(ValueError, match="executor_dds"):
        controller.act(obs)


def test_executor_section_is_optional_and_checked(configs: Path, tmp_path: Path) -> None:
    base = (f"extends: {configs / 'maze/tiny.yaml'}\nsource: {configs / 'maze/source.yaml'}\n"
            f"targets: [{configs / 'maze/t1.yaml'}]\n")
    with_dds = tmp_path / "with.yaml"
    with_dds.write_text(base)
    without = tmp_path / "without.yaml"
    without.write_text(base + "executor_dds: null\n")
    experiment = load_experiment(with_dds)
    assert isinstance(experiment.config.executor_dds, DDSConfig) and experiment.config.executor_dds.horizon == 4
    assert load_experiment(without).config.executor_dds is None
    assert load_experiment(without).fingerprint() != experiment.fingerprint()
    assert "mstt_dds" not in DEFAULT_METHODS and "mstt_dds" not in experiment.config.eval.methods
    listed = tmp_path / "listed.yaml"
    listed.write_text(base + "executor_dds: null\neval: {methods: [mstt, mstt_dds]}\n")
    with pytest.raises(ConfigError, match="executor_dds"):
        load_experiment(listed)
    too_long = tmp_path / "long.yaml"
    too_long.write_text(base + "executor_dds: {encoder: {horizon: 9}}\n")
    with pytest.raises(ConfigError, match="generator.horizon"):
        load_experiment(too_long)
