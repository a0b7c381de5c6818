"""Masked-Bellman critic: the target operator on hand-made tensors, mask sampling, data building, a tiny two-route
skill graph where masking the shortcut must switch the preferred first skill, and exact save/load."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mstt.skills.checkpoint import CheckpointError
from mstt.skills.critic import (
    TERMINATION_REWARD,
    BatchSampler,
    CriticConfig,
    CriticReport,
    MaskedCritic,
    build_skill_transitions,
    continuation_return_bound,
    ensure_both_taken_cases,
    goal_reached,
    masked_bellman_target,
    masked_soft_max,
    prior_support,
    train_critic,
)
from mstt.skills.generator import GeneratorConfig, TrajectoryGenerator
from mstt.skills.masks import segment_masks

HORIZON = 2
NUM_SKILLS = 8
GOAL = (3.0, 0.0)
GOAL_RADIUS = 0.3
GAMMA = 0.9
SHORTCUT = (0, 1)
LONG_ROUTE = (2, 3, 4, 5)



def two_route_episodes() -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """From A = (0, 0) to G = (3, 0): a shortcut of 2 skills (0, 1) above, a long route of 4 (2, 3, 4, 5) below."""
    short = np.array([[0, 0], [0.5, 1], [1, 2], [2, 1.5], [3, 0]], dtype=np.float32)
    long = np.array(
        [[0, 0], [0, -1], [0, -2], [0.5, -2.5], [1, -3], [2, -3], [3, -2], [3, -1], [3, 0]], dtype=np.float32
    )
    episodes = [{"observations": p.copy(), "positions": p.copy()} for p in (short, long)]
    return episodes, [np.array(SHORTCUT), np.array(LONG_ROUTE)]


def tiny_config(**overrides: object) -> CriticConfig:
    values: dict[str, object] = dict(
        hidden=64,
        layers=2,
        gamma=GAMMA,
        lr=3e-3,
        tau=0.05,
        batch_size=64,
        steps=600,
        prior_steps=200,
        prior_lr=1e-2,
        keep_prob=0.5,
        structured_mask_fraction=0.3,
        segment_min_windows=1,
        segment_max_windows=3,
        goal_radius=GOAL_RADIUS,
        target_temperature=0.01,
        goal_conditioned=False,
        fixed_goal=GOAL,
        her_fraction=1.0,
        log_every=200,
        device="cpu",
    )
    values.update(overrides)
    return CriticConfig(**values)  # type: ignore[arg-type]


# ---- the masked Bellman target ---------------------------------------------------------------------------------


def test_target_is_r_term_for_a_masked_skill_whatever_the_reward_and_bootstrap() -> None:
    reward = torch.tensor([1.0, 0.0, 1.0])
    done = torch.tensor([True, False, False])
    next_q = torch.full((3, 4), 0.9)
    allowed = torch.ones(3, 4, dtype=torch.bool)
    y = masked_bellman_target(reward, done, torch.zeros(3, dtype=torch.bool), next_q, allowed, discount=0.8)
    assert torch.equal(y, torch.full((3,), TERMINATION_REWARD))


def test_target_bootstraps_over_allowed_skills_only_and_falls_back_to_r_term() -> None:
    reward = torch.zeros(3)
    done = torch.zeros(3, dtype=torch.bool)
    taken = torch.ones(3, dtype=torch.bool)
    next_q = torch.tensor([[0.2, 0.9, 0.5], [0.2, 0.9, 0.5], [0.2, 0.9, 0.5]])
    allowed = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    y = masked_bellman_target(reward, done, taken, next_q, allowed, discount=0.5, temperature=0.0)
    torch.testing.assert_close(y, torch.tensor([0.45, 0.25, TERMINATION_REWARD]))


def test_done_target_is_the_reward_without_bootstrap() -> None:
    y = masked_bellman_target(
        torch.tensor([1.0]), torch.tensor([True]), torch.tensor([True]), torch.tensor([[5.0]]),
        torch.tensor([[True]]), discount=0.9,
    )
    assert y.item() == 1.0


def test_mellowmax_lies_between_mean_and_max_and_tends_to_the_max() -> None:
    values = torch.tensor([[0.1, 0.5, 0.52, 0.0]])
    allowed = torch.tensor([[True, True, True, False]])
    hard, _ = masked_soft_max(values, allowed, 0.0)
    soft, _ = masked_soft_max(values, allowed, 0.05)
    cold, _ = masked_soft_max(values, allowed, 1e-4)
    assert hard.item() == pytest.approx(0.52)
    assert values[allowed].mean().item() < soft.item() < hard.item()
    assert cold.item() == pytest.approx(0.52, abs=1e-3)
    _, any_allowed = masked_soft_max(values, torch.zeros_like(allowed), 0.05)
    assert not any_allowed.item()


def test_prior_support_absolute_and_relative() -> None:
    probs = torch.tensor([[0.004, 0.006, 0.99], [0.3, 0.3, 0.4]])
    assert prior_support(probs, 0.005).tolist() == [[False, True, True], [True, True, True]]
    assert prior_support(probs, 0.5, "relative").tolist() == [[False, False, True], [True, True, True]]
    with pytest.raises(ValueError, match="mode"):
        prior_support(probs, 0.1, "bogus")


def test_goal_reached_checks_every_position_of_the_window() -> None:
    positions = torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.5, 0.0]]])
    goals = torch.tensor([[1.1, 0.0], [1.1, 0.0]])
    assert goal_reached(positions, goals, 0.2).tolist() == [True, False]


def test_return_bound_is_the_discounted_return_of_an_unmasked_continuation() -> None:
    # three skills of H = 2 along the x axis; the goal (2.5, 0) is first reached inside skill 1
    positions = torch.tensor([[[0.5, 0], [1.0, 0], [2.0, 0], [2.5, 0], [3.0, 0], [3.5, 0]]])
    valid = torch.ones(1, 6, dtype=torch.bool)
    goal, tokens = torch.tensor([[2.5, 0.0]]), torch.tensor([[4, 5, 6]])
    every = torch.ones(1, NUM_SKILLS, dtype=torch.bool)
    bound, defined = continuation_return_bound(positions, valid, goal, tokens, every, 0.1, discount=0.8)
    assert defined.item() and bound.item() == pytest.approx(0.8)
    # skill 2 runs after the goal is reached: masking it does not matter; masking skill 1 or 0 does
    for masked, expected in ((6, True), (5, False), (4, False)):
        mask = every.clone()
        mask[0, masked] = False
        _, defined = continuation_return_bound(positions, valid, goal, tokens, mask, 0.1, discount=0.8)
        assert defined.item() is expected
    # a goal the continuation never reaches, or reaches only past the episode's end, gives no bound
    far = torch.tensor([[9.0, 9.0]])
    assert not continuation_return_bound(positions, valid, far, tokens, every, 0.1, 0.8)[1].item()
    cut = valid.clone()
    cut[0, 2:] = False
    assert not continuation_return_bound(positions, cut, goal, tokens, every, 0.1, 0.8)[1].item()
    # a continuation without a skill there (episode over) gives no bound either
    padded = torch.tensor([[4, -1, -1]])
    assert not continuation_return_bound(positions, valid, goal, padded, every, 0.1, 0.8)[1].item()


def test_demo_like_samples_take_their_segment_end_as_goal() -> None:
    episodes, tokens = two_route_episodes()
    data = build_skill_transitions(episodes, tokens, HORIZON, HORIZON, num_skills=NUM_SKILLS)
    config = tiny_config(
        structured_mask_fraction=1.0, anchored_segment_fraction=1.0, segment_goal_fraction=1.0,
        segments_per_mask=1, segment_min_windows=1, segment_max_windows=4, her_fraction=0.0,
        goal_conditioned=True, fixed_goal=None,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    sampler = BatchSampler(data, config, data.episode_tokens, data.episode_windows, gen)
    idx = torch.arange(len(data)).repeat(50)
    masks, goals = sampler.masks_and_goals(idx)
    # every goal is where some window of the sample's own episode ends, at or after the sample's own window
    for i, g in zip(idx.tolist(), goals):
        episode, window = int(data.episode[i]), int(data.window[i])
        ends = data.achieved[episode, (torch.arange(window, int(data.episode_windows[episode])) + 1) * HORIZON]
        assert (ends == g).all(dim=1).any()
    # the data's own continuation then reaches the goal through unmasked skills: the bound is always defined
    bound, defined = sampler.return_bound(idx, goals, masks)
    taken = masks[torch.arange(len(idx)), data.z[idx]]
    assert defined[taken].all() and ((bound > 0) & (bound <= 1))[taken].all()


# ---- masks -----------------------------------------------------------------------------------------------------


def test_segment_masks_are_contiguous_segments_and_anchored_ones_contain_the_anchor() -> None:
    table = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, -1, -1, -1, -1, -1]])
    windows = torch.tensor([8, 3])
    segments = {"segments_per_mask": 1, "min_windows": 2, "max_windows": 3}
    gen = torch.Generator().manual_seed(0)
    masks = segment_masks(table, windows, 200, NUM_SKILLS, gen, **segments)[0]
    for row in masks:
        on = row.nonzero().squeeze(1).tolist()
        assert 2 <= len(on) <= 3
        # both episodes hold runs of consecutive tokens, so a segment is a run of consecutive integers
        assert on == list(range(on[0], on[0] + len(on)))
    anchor_window = torch.randint(8, (200,), generator=gen)
    anchored = segment_masks(
        table, windows, 200, NUM_SKILLS, gen, **segments, anchor_episode=torch.zeros(200, dtype=torch.long),
        anchor_window=anchor_window,
    )[0]
    assert anchored[torch.arange(200), table[0, anchor_window]].all()


def test_batch_always_shows_both_taken_cases() -> None:
    z = torch.tensor([1, 2, 3])
    all_on = ensure_both_taken_cases(torch.ones(3, 4, dtype=torch.bool), z)
    all_off = ensure_both_taken_cases(torch.zeros(3, 4, dtype=torch.bool), z)
    for masks in (all_on, all_off):
        taken = masks[torch.arange(3), z]
        assert taken.any() and (~taken).any()
    mixed = torch.tensor([[True, True], [False, False]])
    assert torch.equal(ensure_both_taken_cases(mixed, torch.tensor([0, 0])), mixed)


# ---- data ------------------------------------------------------------------------------------------------------


def test_build_skill_transitions_aligns_states_tokens_and_reward_positions() -> None:
    episodes, tokens = two_route_episodes()
    data = build_skill_transitions(episodes, tokens, HORIZON, HORIZON, num_skills=NUM_SKILLS)
    assert len(data) == 6 and data.num_skills == NUM_SKILLS
    assert data.z.tolist() == [*SHORTCUT, *LONG_ROUTE]
    long = episodes[1]["positions"]
    k = 2 + 1  # second window of the long route
    torch.testing.assert_close(data.s[k], torch.tensor(long[2]))
    torch.testing.assert_close(data.s_next[k], torch.tensor(long[4]))
    torch.testing.assert_close(data.positions[k], torch.tensor(long[3:5]))
    assert data.episode_tokens[0, :2].tolist() == list(SHORTCUT)
    with pytest.raises(ValueError, match="tokens"):
        build_skill_transitions(episodes, [np.array([0]), tokens[1]], HORIZON, HORIZON)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="keep_prob"):
        CriticConfig(keep_prob=1.5)
    with pytest.raises(ValueError, match="fixed_goal"):
        CriticConfig(goal_conditioned=False)
    with pytest.raises(ValueError, match="prior_threshold_mode"):
        CriticConfig(prior_threshold_mode="max")


# ---- behaviour on the two-route graph ---------------------------------------------------------------------------


def _mask(*masked: int) -> torch.Tensor:
    mask = torch.ones(1, NUM_SKILLS, dtype=torch.bool)
    mask[0, list(masked)] = False
    return mask


@pytest.fixture(scope="module", params=[False, True], ids=["fixed-goal", "goal-conditioned"])
def trained(request: pytest.FixtureRequest) -> tuple[MaskedCritic, CriticReport]:
    episodes, tokens = two_route_episodes()
    data = build_skill_transitions(episodes, tokens, HORIZON, HORIZON, num_skills=NUM_SKILLS)
    config = tiny_config(goal_conditioned=request.param, fixed_goal=None if request.param else GOAL)
    return train_critic(data, config, progress=False)


def test_critic_prefers_the_shortcut_unless_its_skills_are_masked(trained: tuple[MaskedCritic, CriticReport]) -> None:
    critic, report = trained
    start, goal = torch.zeros(1, 2), torch.tensor([GOAL])
    first_long, first_short = LONG_ROUTE[0], SHORTCUT[0]

    def best_data_skill(mask: torch.Tensor) -> int:
        q = critic.q_values(start, mask, goal)[0]
        return int(torch.tensor([first_short, first_long])[q[[first_short, first_long]].argmax()])

    with torch.no_grad():
        assert best_data_skill(_mask()) == first_short
        assert best_data_skill(_mask(*SHORTCUT)) == first_long
        # masking only the shortcut's second skill strands it at B: the masked bootstrap falls back to r_term
        assert best_data_skill(_mask(SHORTCUT[1])) == first_long
        q_open = critic.q_values(start, _mask(), goal)[0]
        q_blocked = critic.q_values(start, _mask(*SHORTCUT), goal)[0]
    discount = GAMMA**HORIZON
    assert abs(q_blocked[first_short].item() - TERMINATION_REWARD) < 0.1
    assert q_blocked[first_long].item() > 0.1  # the long route still reaches the goal
    if not critic.config.goal_conditioned:
        # one goal: the tabular fixed point is Q(A, 0) = discount, Q(A, 2) = discount ** 3. A small net
        # under-estimates the long route (its value needs all of 3, 4, 5 unmasked, 1 in 8 Bernoulli masks).
        assert q_open[first_short].item() == pytest.approx(discount, abs=0.12)
        assert discount**3 - 0.25 < q_open[first_long].item() < discount**3 + 0.1
    assert report.prior_accuracy >= 0.6  # from A the data takes 0 or 2 equally often: 5 of 6 is the ceiling
    assert math.isfinite(report.final_td_loss) and report.final_td_loss < report.td_losses[0]


def test_critic_save_load_is_exact(trained: tuple[MaskedCritic, CriticReport], tmp_path: Path) -> None:
    critic, _ = trained
    directory = tmp_path / "critic"
    critic.save_pretrained(directory)
    loaded = MaskedCritic.from_pretrained(directory, device="cpu")
    states = torch.randn(5, 2)
    masks = torch.rand(5, NUM_SKILLS) < 0.5
    goals = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.equal(critic.q_values(states, masks, goals), loaded.q_values(states, masks, goals))
        assert torch.equal(critic.skill_prior(states), loaded.skill_prior(states))
    assert loaded.config == critic.config and loaded.horizon == critic.horizon


def test_critic_refuses_a_generator_checkpoint(tmp_path: Path) -> None:
    config = GeneratorConfig(
        horizon=4, hidden=8, depth=1, norm_groups=4, cond_dim=16, timestep_embed_dim=8, device="cpu"
    )
    directory = tmp_path / "generator"
    TrajectoryGenerator(config, state_dim=2, action_dim=2).save_pretrained(directory)
    with pytest.raises(CheckpointError, match="kind"):
        MaskedCritic.from_pretrained(directory)


def test_state_values_max_over_permitted_skills_in_the_prior_support() -> None:
    """V(s, m, g), the planner's lookahead: max Q over skills both unmasked and in the data's support at s, r_term
    where no skill is both."""
    torch.manual_seed(0)
    config = CriticConfig(hidden=16, layers=1, prior_threshold=0.3)
    critic = MaskedCritic(config, state_dim=4, goal_dim=2, num_skills=3, horizon=4)
    with torch.no_grad():  # prior: skill 2 certain at every state (logits dominated by the bias)
        critic.prior_net[-1].weight.zero_()
        critic.prior_net[-1].bias.copy_(torch.tensor([-10.0, -10.0, 10.0]))
    s, g = torch.randn(5, 4), torch.randn(5, 2)
    masks = torch.tensor([[True, True, True]] * 3 + [[True, True, False]] * 2)
    q = critic.q_values(s, masks, g)
    values = critic.state_values(s, masks, g)
    torch.testing.assert_close(values[:3], q[:3, 2])  # only skill 2 is in the support
    assert (values[3:] == TERMINATION_REWARD).all()  # skill 2 masked: nothing both permitted and supported
