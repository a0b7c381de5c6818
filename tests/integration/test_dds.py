"""Discrete Diffusion Skills and the offline-RL harness: relabelling, IQL losses in closed form, codebook usage,
exact save/load round trips, and one `mstt offline` run end to end on a toy config (seconds, not results)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mstt.agent.cli import main
from mstt.skills.action_decoder import ActionDecoder, ActionDecoderConfig
from mstt.skills.dds import DDSAgent, DDSConfig, train_dds, train_skills
from mstt.skills.dds_encoder import SkillEncoderConfig
from mstt.skills.iql import (
    IQLConfig,
    IQLLearner,
    awr_weights,
    deterministic_awr_loss,
    discrete_awr_loss,
    expectile_loss,
    q_loss,
    train_iql,
    value_loss,
)  # fmt: skip
from mstt.skills.quantiser import codebook_usage
from mstt.skills.relabel import relabel_episode, state_action_windows, window_starts

TINY_ENCODER = SkillEncoderConfig(horizon=4, codebook_size=4, code_dim=8, width=16, layers=1, heads=2,
                                  kmeans_init_samples=400, threshold_ema_dead_code=1.0)  # fmt: skip
TINY_DECODER = ActionDecoderConfig(hidden=16, blocks=1, train_timesteps=10, inference_steps=5)


def _tiny_config(**changes: object) -> DDSConfig:
    values = dict(encoder=TINY_ENCODER, decoder=TINY_DECODER,
                  iql=IQLConfig(hidden=16, layers=1, steps=30, batch_size=32),
                  skill_steps=30, skill_batch_size=32, device="cpu")  # fmt: skip
    values.update(changes)
    return DDSConfig(**values)  # type: ignore[arg-type]


def _episodes(n: int = 4, steps: int = 120, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random-walk episodes whose actions come in four constant behaviours (one per 30-step block)."""
    rng = np.random.default_rng(seed)
    behaviours = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32) * 0.8
    out = []
    for _ in range(n):
        actions = np.repeat(behaviours, steps // 4, axis=0) + rng.normal(0, 0.05, (steps, 2)).astype(np.float32)
        obs = np.zeros((steps + 1, 4), np.float32)
        obs[1:, :2] = np.cumsum(actions, axis=0) * 0.1
        obs[1:, 2:] = actions
        rewards = (rng.random(steps) < 0.03).astype(np.float32)
        out.append({"observations": obs, "actions": actions, "rewards": rewards, "terminals": rewards > 0,
                    "goals": np.tile(rng.normal(size=2).astype(np.float32), (steps + 1, 1))})  # fmt: skip
    return out


# --- relabelling ---------------------------------------------------------------------------------------------


def test_relabel_hand_made_trajectory() -> None:
    """T = 6, H = 3, gamma = 0.5, a terminal at step 3: returns stop there, done = 1, s' is the terminal state."""
    obs = np.arange(7, dtype=np.float32)[:, None] * 10  # state t is 10 t
    goals = np.arange(7, dtype=np.float32)[:, None] + 100
    rewards = np.array([1, 0, 2, 3, 0, 4], dtype=np.float32)
    terminals = np.array([0, 0, 0, 1, 0, 0], dtype=bool)
    skills = np.array([5, 6, 7, 8])
    out = relabel_episode(obs, rewards, terminals, skills, horizon=3, gamma=0.5, goals=goals)
    np.testing.assert_array_equal(window_starts(6, 3), [0, 1, 2, 3])
    np.testing.assert_array_equal(out.skills, skills)
    np.testing.assert_array_equal(out.observations[:, 0], [0, 10, 20, 30])
    np.testing.assert_array_equal(out.goals[:, 0], [100, 101, 102, 103])
    # start 0: 1 + .5*0 + .25*2; start 1: 0 + .5*2 + .25*3 (terminal last); start 2: 2 + .5*3; start 3: 3.
    np.testing.assert_allclose(out.returns, [1.5, 1.75, 3.5, 3.0])
    np.testing.assert_array_equal(out.dones, [0, 1, 1, 1])
    np.testing.assert_array_equal(out.steps, [3, 3, 2, 1])
    np.testing.assert_allclose(out.discounts, [0.125, 0.125, 0.25, 0.5])
    np.testing.assert_array_equal(out.next_observations[:, 0], [30, 40, 40, 40])
    np.testing.assert_array_equal(out.next_goals[:, 0], [103, 104, 104, 104])

    strided = relabel_episode(obs, rewards, terminals, np.array([1, 2]), horizon=3, gamma=0.5, stride=2)
    np.testing.assert_allclose(strided.returns, [1.5, 3.5])
    assert strided.goals.shape == (2, 0)
    with pytest.raises(ValueError, match="skills given"):
        relabel_episode(obs, rewards, terminals, np.array([1]), horizon=3, gamma=0.5)


def test_state_action_windows_line_up_states_and_actions() -> None:
    obs = np.arange(5, dtype=np.float32)[:, None]
    actions = -np.arange(4, dtype=np.float32)[:, None]
    windows = state_action_windows(obs, actions, horizon=2, stride=1)
    assert windows.shape == (3, 2, 2)
    np.testing.assert_array_equal(windows[1], [[1, -1], [2, -2]])
    assert state_action_windows(obs, actions, horizon=9).shape == (0, 9, 2)


# --- IQL losses on a two-state toy ---------------------------------------------------------------------------


def test_expectile_and_value_loss_closed_form() -> None:
    # Two states: V = (0, 3), Q = (2, 1): errors +2 (weight 0.7) and -2 (weight 0.3).
    np.testing.assert_allclose(expectile_loss(torch.tensor([2.0, -2.0]), 0.7).numpy(), [2.8, 1.2], rtol=1e-6)
    loss = value_loss(torch.tensor([0.0, 3.0]), torch.tensor([2.0, 1.0]), 0.7)
    assert loss.total.item() == pytest.approx(2.0)
    np.testing.assert_allclose(loss.advantage.numpy(), [2.0, -2.0])


def test_expectile_regression_converges_to_the_expectile() -> None:
    """Over Q in {0, 1} with equal mass, the tau-expectile v solves tau (1 - v) = (1 - tau) v, i.e. v = tau."""
    v = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.SGD([v], lr=0.5)
    targets = torch.tensor([0.0, 1.0])
    for _ in range(300):
        optimiser.zero_grad()
        value_loss(v.expand(2), targets, 0.7).total.backward()
        optimiser.step()
    assert v.item() == pytest.approx(0.7, abs=1e-4)


def test_q_loss_and_awr_closed_form() -> None:
    heads = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # (E = 2, B = 2)
    out = q_loss(heads, returns=torch.tensor([1.0, 0.5]), discounts=torch.tensor([0.5, 0.9]),
                 dones=torch.tensor([0.0, 1.0]), next_value=torch.tensor([2.0, 7.0]))  # fmt: skip
    np.testing.assert_allclose(out.target.numpy(), [2.0, 0.5])  # 1 + .5 * 2; terminal: no bootstrap
    # head 1: ((1-2)^2 + .25)/2 = .625; head 2: ((3-2)^2 + .25)/2 = .625
    assert out.total.item() == pytest.approx(0.625)

    weights = awr_weights(torch.tensor([0.0, math.log(2.0), 100.0]), temperature=1.0, max_weight=50.0)
    np.testing.assert_allclose(weights.numpy(), [1.0, 2.0, 50.0], rtol=1e-6)
    # Uniform logits over K = 2: log pi = -log 2 for either skill, so the loss is log 2 * mean(w) = 1.5 log 2.
    pi = discrete_awr_loss(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0.0, math.log(2.0)]), 1.0, 100.0)
    assert pi.total.item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    det = deterministic_awr_loss(torch.zeros(2, 1), torch.tensor([[1.0], [2.0]]),
                                 torch.tensor([0.0, math.log(2.0)]), 1.0, 100.0)  # fmt: skip
    assert det.total.item() == pytest.approx((1 * 1 + 2 * 4) / 2, rel=1e-6)


def test_discrete_iql_picks_the_rewarded_skill_per_state(tmp_path: Path) -> None:
    """A two-state bandit: skill 1 pays in state A, skill 0 in state B; the data pick uniformly at random."""
    rng = np.random.default_rng(0)
    n = 2000
    state = rng.integers(0, 2, n)
    action = rng.integers(0, 2, n)
    obs = np.eye(2, dtype=np.float32)[state]
    data = {"observations": obs, "goals": np.zeros((n, 0), np.float32), "actions": action,
            "returns": (action == 1 - state).astype(np.float32), "discounts": np.full(n, 0.9, np.float32),
            "dones": np.ones(n, np.float32), "next_observations": obs,
            "next_goals": np.zeros((n, 0), np.float32)}  # fmt: skip
    config = IQLConfig(hidden=32, layers=1, steps=300, batch_size=128, lr=3e-3, device="cpu")
    learner, report = train_iql(data, config, "discrete", num_actions=2, progress=False)
    picks = learner.act(torch.eye(2), torch.zeros(2, 0))
    assert picks.tolist() == [1, 0]
    q = learner.q_values(torch.eye(2), torch.zeros(2, 0))
    assert q[0, 1] > q[0, 0] + 0.5 and q[1, 0] > q[1, 1] + 0.5
    assert report.steps == 300
    loaded = IQLLearner.from_pretrained(learner.save_pretrained(tmp_path / "iql"))
    torch.testing.assert_close(loaded.q_values(torch.eye(2), torch.zeros(2, 0)), q, rtol=0, atol=0)


# --- skills --------------------------------------------------------------------------------------------------


def test_codebook_usage_counts() -> None:
    usage = codebook_usage(torch.tensor([0, 0, 1, 1]), 4)
    assert usage.live_codes == 2 and usage.perplexity == pytest.approx(2.0) and usage.usage_fraction == 0.5


def test_encoder_codebook_reports_usage_and_separates_behaviours() -> None:
    episodes = _episodes()
    windows = np.concatenate([state_action_windows(e["observations"], e["actions"], 4) for e in episodes])
    skills, report = train_skills(windows, _tiny_config(skill_steps=60), state_dim=4, progress=False)
    assert report.codebook_size == 4 and 1 <= report.live_codes <= 4
    assert 1.0 <= report.perplexity <= report.live_codes + 1e-6
    assert report.usage_fraction == report.live_codes / 4 and not report.collapsed
    # k-means init on four clearly separated behaviours: more than one code is live.
    assert report.live_codes >= 2
    assert skills.encoder.usage(torch.as_tensor(windows)).live_codes == report.live_codes


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="heads"):
        SkillEncoderConfig(width=10, heads=3)
    with pytest.raises(ValueError, match=r"ActionDecoderConfig.kind"):
        ActionDecoderConfig(kind="transformer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inference_steps"):
        ActionDecoderConfig(train_timesteps=4, inference_steps=5)
    with pytest.raises(ValueError, match="IQLConfig.expectile"):
        IQLConfig(expectile=1.0)
    with pytest.raises(ValueError, match="threshold_ema_dead_code"):
        _tiny_config(skill_batch_size=4)


@pytest.mark.parametrize("kind", ["diffusion", "mlp"])
def test_decoder_samples_valid_actions(kind: str) -> None:
    decoder = ActionDecoder(ActionDecoderConfig(kind=kind, hidden=16, blocks=1, train_timesteps=10), 4, 2, 8)  # type: ignore[arg-type]
    states, codes = torch.randn(5, 4), torch.randn(5, 8)
    assert decoder.compute_loss(states, codes, torch.rand(5, 2) * 2 - 1).ndim == 0
    a = decoder.sample(states, codes, generator=torch.Generator().manual_seed(0))
    b = decoder.sample(states, codes, generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, 2) and bool((a.abs() <= 1).all())
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["diffusion", "mlp"])
def test_dds_trains_acts_closed_loop_and_round_trips(kind: str, tmp_path: Path) -> None:
    episodes = _episodes()
    config = _tiny_config(decoder=ActionDecoderConfig(kind=kind, hidden=16, blocks=1, train_timesteps=10))  # type: ignore[arg-type]
    agent, report = train_dds(episodes, config, progress=False)
    assert report.transitions == sum(len(e["actions"]) - 4 + 1 for e in episodes)  # type: ignore[union-attr]
    assert 0 < report.done_fraction < 1  # type: ignore[union-attr]
    obs, goals = episodes[0]["observations"][:3], episodes[0]["goals"][:3]
    agent.reset(3, seed=1)
    first = [agent.act(obs, goals) for _ in range(9)]
    # A skill is chosen at steps 0, 4 and 8 (H = 4), the decoder runs at every step.
    assert len(agent.chosen) == 3 and first[0].shape == (3, 2)
    loaded = DDSAgent.from_pretrained(agent.save_pretrained(tmp_path / "dds"))
    loaded.reset(3, seed=1)
    again = [loaded.act(obs, goals) for _ in range(9)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for x, y in zip(agent.skills.state_dict().values(), loaded.skills.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


# --- the `mstt offline` command --------------------------------------------------------------------------------


@pytest.fixture
def offline_file(configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """configs/offline/tiny.yaml on a 40-step UMaze so evaluation takes seconds; data under tmp_path."""
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "umaze_short.yaml"
    source.write_text(f"extends: {configs / 'maze/umaze.yaml'}\nepisode_steps: 40\n")
    path = tmp_path / "offline.yaml"
    path.write_text(f"extends: {configs / 'offline/tiny.yaml'}\nsource: {source}\n")
    return path


def test_train_and_eval_select_the_offline_algorithms_by_the_config(offline_file: Path, tmp_path: Path) -> None:

    run, out = tmp_path / "run", tmp_path / "eval.json"
    assert main(["train", str(offline_file), "--run", str(run), "--device", "cpu", "--quiet"]) == 0
    assert (run / "dds").is_dir() and (run / "iql").is_dir() and (run / "bc").is_dir()
    assert main(["eval", str(offline_file), "--run", str(run), "--episodes", "2", "--json", str(out), "--quiet"]) == 0
    assert set(json.loads(out.read_text())["methods"]) == {"dds", "iql", "bc"}


def test_offline_cli_end_to_end(offline_file: Path, tmp_path: Path) -> None:

    run, out = tmp_path / "run", tmp_path / "offline.json"
    command = ["offline", str(offline_file), "--run", str(run), "--episodes", "3", "--json", str(out), "--quiet"]
    assert main(command) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 3 and result["decoder"] == "diffusion"
    assert result["reference"]["random"] == 23.85 and result["reference"]["expert"] == 161.86
    assert set(result["methods"]) == {"dds", "iql", "bc"}
    for metrics in result["methods"].values():
        lo, hi = metrics["success_ci95"]
        assert 0 <= lo <= metrics["success_rate"] <= hi <= 1
        expected = 100 * (metrics["return_mean"] - 23.85) / (161.86 - 23.85)
        assert metrics["normalised_score"] == pytest.approx(expected)
    skills = result["training"]["dds"]["skills"]
    assert skills["codebook_size"] == 4 and 1 <= skills["live_codes"] <= 4 and skills["perplexity"] >= 1
    for stage in ("dds/skills", "dds/high_level", "iql", "bc"):
        assert (run / stage / "model.safetensors").exists()
    assert not list(tmp_path.glob(".offline.json.*"))  # written atomically, no temp file left

    # A second call reuses the trained models and evaluates the same seeds: identical metrics.
    again = tmp_path / "again.json"
    command = ["offline", str(offline_file), "--run", str(run), "--episodes", "3", "--json", str(again), "--quiet"]
    assert main(command) == 0
    assert json.loads(again.read_text())["methods"]["dds"]["return_mean"] == result["methods"]["dds"]["return_mean"]
    # The decoder ablation changes the training config: the same run folder is refused, a user error.
    assert main(["offline", str(offline_file), "--run", str(run), "--set", "dds.decoder.kind=mlp", "--quiet"]) == 2


def test_offline_config_errors(configs: Path, tmp_path: Path) -> None:

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {configs / 'offline/tiny.yaml'}\nsource: {configs / 'maze/umaze.yaml'}\n"
                   "dds: {encoder: {width: 10, heads: 3}}\n")  # fmt: skip
    assert main(["offline", str(bad), "--run", str(tmp_path / "r")]) == 2
    assert main(["offline", str(configs / "maze/tiny.yaml"), "--run", str(tmp_path / "r")]) == 2
