"""Tests for skills/theory.py: algebraic properties of the masked Bellman operator on random MDPs,
and the Figure-3 claims (exact at p_min = 1, a real gap with slip) on the four-room world."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstt.skills.theory import (
    TheoryConfig,
    build_four_rooms,
    evaluate_policy,
    greedy_policy,
    masked_bellman_operator,
    masked_fixed_point,
    masked_state_value,
    masked_value_iteration,
    optimal_value,
    run_theory,
    value_gap,
)

MAX_STATES = 6
MAX_SKILLS = 4
MAX_GAMMA = 0.95
REWARD_SCALE = 5.0
CONTRACTION_SLACK = 1e-9
FIXED_POINT_ACCURACY = 1e-8
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
SMALL_P_GRID = (0.9, 1.0)


@dataclass(frozen=True)
class RandomMdp:
    P: np.ndarray  # (S, L, S)
    R: np.ndarray  # (S, L)
    r_term: np.ndarray  # (S,)
    gamma: float
    mask: np.ndarray  # (L,) or (S, L), bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.R.shape


@st.composite
def random_mdps(draw: st.DrawFn) -> RandomMdp:
    n_states = draw(st.integers(1, MAX_STATES))
    n_skills = draw(st.integers(1, MAX_SKILLS))
    gamma = draw(st.floats(0.0, MAX_GAMMA))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Sparse-ish rows exercise deterministic transitions as well as spread-out ones.
    weights = rng.random((n_states, n_skills, n_states)) * (rng.random((n_states, n_skills, n_states)) < 0.7)
    weights[..., 0] += 1e-3
    P = weights / weights.sum(axis=-1, keepdims=True)
    mask_shape = draw(st.sampled_from([(n_skills,), (n_states, n_skills)]))
    mask_size = int(np.prod(mask_shape))
    mask = np.array(draw(st.lists(st.booleans(), min_size=mask_size, max_size=mask_size)))
    return RandomMdp(
        P=P,
        R=rng.uniform(-REWARD_SCALE, REWARD_SCALE, (n_states, n_skills)),
        r_term=rng.uniform(-REWARD_SCALE, REWARD_SCALE, n_states),
        gamma=gamma,
        mask=mask.reshape(mask_shape),
    )


def random_q(mdp: RandomMdp, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3 * REWARD_SCALE, 3 * REWARD_SCALE, mdp.shape)


# ---------------------------------------------------------------- operator properties on random MDPs


@PROPERTY_SETTINGS
@given(mdp=random_mdps(), seed=st.integers(0, 2**32 - 1))
def test_all_ones_mask_is_bellman_optimality_operator(mdp: RandomMdp, seed: int) -> None:
    Q = random_q(mdp, seed)
    expected = mdp.R + mdp.gamma * mdp.P @ Q.max(axis=1)
    ones = np.ones(mdp.shape[1], dtype=bool)
    np.testing.assert_allclose(
        masked_bellman_operator(Q, ones, mdp.P, mdp.R, mdp.r_term, mdp.gamma), expected, rtol=0, atol=1e-12
    )


@PROPERTY_SETTINGS
@given(mdp=random_mdps(), seed=st.integers(0, 2**32 - 1))
def test_all_zeros_mask_returns_termination_reward(mdp: RandomMdp, seed: int) -> None:
    zeros = np.zeros(mdp.shape[1], dtype=bool)
    result = masked_bellman_operator(random_q(mdp, seed), zeros, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    np.testing.assert_array_equal(result, np.broadcast_to(mdp.r_term[:, None], mdp.shape))


@PROPERTY_SETTINGS
@given(mdp=random_mdps(), seed_1=st.integers(0, 2**32 - 1), seed_2=st.integers(0, 2**32 - 1))
def test_operator_is_gamma_contraction_for_any_mask(mdp: RandomMdp, seed_1: int, seed_2: int) -> None:
    Q1, Q2 = random_q(mdp, seed_1), random_q(mdp, seed_2)
    T1 = masked_bellman_operator(Q1, mdp.mask, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    T2 = masked_bellman_operator(Q2, mdp.mask, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    assert np.max(np.abs(T1 - T2)) <= mdp.gamma * np.max(np.abs(Q1 - Q2)) + CONTRACTION_SLACK


@PROPERTY_SETTINGS
@given(mdp=random_mdps(), seed=st.integers(0, 2**32 - 1))
def test_masked_skills_and_empty_states_take_termination_reward(mdp: RandomMdp, seed: int) -> None:
    Q = random_q(mdp, seed)
    feasible = np.broadcast_to(mdp.mask, mdp.shape)
    result = masked_bellman_operator(Q, mdp.mask, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    r_term_everywhere = np.broadcast_to(mdp.r_term[:, None], mdp.shape)
    np.testing.assert_array_equal(result[~feasible], r_term_everywhere[~feasible])
    V = masked_state_value(Q, mdp.mask, mdp.r_term)
    empty = ~feasible.any(axis=1)
    np.testing.assert_array_equal(V[empty], mdp.r_term[empty])


@PROPERTY_SETTINGS
@given(mdp=random_mdps())
def test_fixed_point_is_fixed_and_matches_value_iteration(mdp: RandomMdp) -> None:
    Q = masked_fixed_point(mdp.mask, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    T_Q = masked_bellman_operator(Q, mdp.mask, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    np.testing.assert_allclose(T_Q, Q, rtol=0, atol=FIXED_POINT_ACCURACY)
    Q_vi = masked_value_iteration(mdp.mask, mdp.P, mdp.R, mdp.r_term, mdp.gamma)
    np.testing.assert_allclose(Q_vi, Q, rtol=0, atol=FIXED_POINT_ACCURACY)


@PROPERTY_SETTINGS
@given(mdp=random_mdps(), seed=st.integers(0, 2**32 - 1))
def test_policy_evaluation_solves_its_bellman_equation_and_is_bounded_by_optimum(
    mdp: RandomMdp, seed: int
) -> None:
    policy = np.random.default_rng(seed).integers(0, mdp.shape[1], mdp.shape[0])
    V = evaluate_policy(policy, mdp.P, mdp.R, mdp.gamma)
    states = np.arange(mdp.shape[0])
    np.testing.assert_allclose(
        V, mdp.R[states, policy] + mdp.gamma * mdp.P[states, policy] @ V, rtol=0, atol=FIXED_POINT_ACCURACY
    )
    assert np.all(V <= optimal_value(mdp.P, mdp.R, mdp.gamma) + FIXED_POINT_ACCURACY)


def test_greedy_policy_only_picks_feasible_skills() -> None:
    Q = np.array([[5.0, 1.0, 2.0], [0.0, 3.0, 3.0]])
    mask = np.array([False, True, True])
    assert greedy_policy(Q, mask).tolist() == [2, 1]
    picks = {int(greedy_policy(Q, mask, np.random.default_rng(seed))[1]) for seed in range(20)}
    assert picks == {1, 2}, "ties should be broken across both tied skills"


def test_mask_of_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="mask has shape"):
        masked_state_value(np.zeros((3, 2)), np.ones(3, dtype=bool), np.zeros(3))


# ---------------------------------------------------------------- the four-room construction


def test_four_room_blocking_and_mask() -> None:
    config = TheoryConfig()
    world = build_four_rooms(config)
    assert world.n_skills == 104 and world.n_states == 105
    blocked_states = {world.cells[s] for s in np.nonzero(world.blocking.any(axis=1))[0]}
    row, col = config.blocked_doorway
    assert blocked_states == {(row, col - 1), (row, col + 1)}
    assert np.flatnonzero(~world.mask).tolist() == [world.doorway]
    for p_min in (0.6, 1.0):
        for P, R in (world.source_dynamics(p_min), world.blocked_dynamics(p_min)):
            np.testing.assert_allclose(P.sum(axis=-1), 1.0, atol=1e-12)
            assert R.max() <= config.goal_reward


def test_masked_fixed_point_on_four_room_is_fixed() -> None:
    config = TheoryConfig()
    world = build_four_rooms(config)
    P, R = world.source_dynamics(0.8)
    Q = masked_fixed_point(world.mask, P, R, world.r_term, config.gamma)
    T_Q = masked_bellman_operator(Q, world.mask, P, R, world.r_term, config.gamma)
    np.testing.assert_allclose(T_Q, Q, rtol=0, atol=FIXED_POINT_ACCURACY)


@pytest.mark.parametrize("termination_reward", [0.0, -0.5])
def test_gap_vanishes_for_deterministic_skills(termination_reward: float) -> None:
    config = TheoryConfig(termination_reward=termination_reward)
    assert value_gap(build_four_rooms(config), 1.0, config.gamma, config.seed) < 1e-8


def test_gap_is_positive_with_slip_and_shrinks_towards_one() -> None:
    config = TheoryConfig(p_min_grid=(0.8, 0.95, 1.0))
    gap = dict(zip(config.p_min_grid, run_theory(config, None, None)["gap"]))
    assert gap[0.8] > 1e-2, "with slip the mask must miss the failing outcomes"
    assert gap[0.8] > gap[0.95] > gap[1.0]


def test_masked_policy_never_beats_the_blocked_optimum() -> None:
    config = TheoryConfig()
    world = build_four_rooms(config)
    P_source, R_source = world.source_dynamics(0.8)
    P_blocked, R_blocked = world.blocked_dynamics(0.8)
    Q_masked = masked_fixed_point(world.mask, P_source, R_source, world.r_term, config.gamma)
    policy = greedy_policy(Q_masked, world.mask, np.random.default_rng(config.seed))
    assert world.mask[policy].all(), "the masked planner must never pick a masked skill"
    loss = optimal_value(P_blocked, R_blocked, config.gamma) - evaluate_policy(
        policy, P_blocked, R_blocked, config.gamma
    )
    assert loss.min() >= -FIXED_POINT_ACCURACY
    assert loss.max() == pytest.approx(value_gap(world, 0.8, config.gamma, config.seed), abs=1e-12)


def test_run_theory_writes_json_and_png(tmp_path: Path) -> None:
    config = TheoryConfig(p_min_grid=SMALL_P_GRID)
    json_path, png_path = tmp_path / "out" / "theory.json", tmp_path / "theory.png"
    result = run_theory(config, json_path, png_path)
    written = json.loads(json_path.read_text())
    assert written == result
    assert written["p_min"] == list(SMALL_P_GRID) and len(written["gap"]) == len(SMALL_P_GRID)
    assert written["config"]["blocked_doorway"] == list(config.blocked_doorway)
    assert TheoryConfig(**written["config"]) == config, "the recorded config must reproduce the run"
    assert png_path.read_bytes().startswith(PNG_SIGNATURE)
    leftovers = sorted(p.name for p in tmp_path.rglob("*"))
    assert leftovers == ["out", "theory.json", "theory.png"], "temp files must not be left behind"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gamma": 1.0}, "gamma"),
        ({"p_min_grid": (0.5, 1.2)}, "p_min_grid"),
        ({"p_min_grid": ()}, "p_min_grid"),
        ({"goal": (0, 0)}, "goal"),
        ({"blocked_doorway": (1, 11)}, "blocked_doorway"),
        ({"termination_reward": 0.5}, "termination_reward"),
        ({"goal_reward": 0.0}, "goal_reward"),
        ({"layout": ("###", "#.#", "##")}, "layout"),
        ({"layout": ("###", "#..", "###")}, "layout"),
    ],
)
def test_invalid_config_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"TheoryConfig.{field}"):
        TheoryConfig(**overrides)
