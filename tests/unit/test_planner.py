"""Skill planner: the mask filter never returns a masked token while a feasible candidate exists (property tests),
the batched plan and the one-at-a-time reference (Algorithm 2) agree on feasibility, the fallback heads for a permitted
skill's start and is flagged, each score ranks as documented, and the real generator and critics plug in."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mstt.agent.experiments.bench import plan_one_at_a_time
from mstt.skills.critic import ConstantCritic, CriticConfig, MaskedCritic
from mstt.skills.generator import GeneratorConfig, TrajectoryGenerator
from mstt.skills.masks import DemoWindows
from mstt.skills.planner import (
    CandidateGenerator,
    PlannerConfig,
    SkillCritic,
    SkillPlanner,
    TokenEncoder,
    demo_distance,
    select_feasible,
)

HORIZON = 4
NUM_DIRECTIONS = 8
STATE_DIM, ACTION_DIM, POS_DIM = 4, 2, 2
STEP = 0.1



class DirectionTokenizer:
    """Stand-in tokenizer: nearest of 8 compass displacements (start -> end of the window) is the token."""

    horizon = HORIZON
    codebook_size = NUM_DIRECTIONS

    def __init__(self) -> None:
        angles = torch.arange(NUM_DIRECTIONS) * (2 * math.pi / NUM_DIRECTIONS)
        self.centroids = torch.stack([angles.cos(), angles.sin()], dim=1) * STEP * (HORIZON - 1)  # (L, 2)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, H, P) -> (B,) long."""
        displacement = windows[:, -1] - windows[:, 0]
        return torch.cdist(displacement, self.centroids).argmin(dim=1)

    def token_starts(self) -> torch.Tensor:
        """(L, 2) each direction's skill starts one unit out along that direction."""
        return self.centroids / (STEP * (HORIZON - 1))


class LineGenerator:
    """Stand-in generator: straight lines from s at a random angle in [angle_low, angle_high) (radians)."""

    state_dim = STATE_DIM
    goal_conditioned = False
    device = torch.device("cpu")

    def __init__(self, angle_low: float = 0.0, angle_high: float = 2 * math.pi) -> None:
        self.angle_low, self.angle_high = angle_low, angle_high
        self.calls = 0

    def sample(
        self,
        states: torch.Tensor,
        n: int,
        goals: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        self.calls += 1
        spread = self.angle_high - self.angle_low
        angle = self.angle_low + spread * torch.rand(states.shape[0], n, generator=generator)
        direction = torch.stack([angle.cos(), angle.sin()], dim=-1)  # (B, n, 2)
        t = torch.arange(HORIZON, dtype=torch.float32)[None, None, :, None] * STEP
        tau = torch.zeros(states.shape[0], n, HORIZON, STATE_DIM + ACTION_DIM)
        tau[..., :POS_DIM] = states[:, None, None, :POS_DIM] + t * direction[:, :, None]
        tau[..., STATE_DIM:] = direction[:, :, None]
        return tau


class TableCritic(ConstantCritic):
    """Stand-in critic: a fixed Q per skill, the same for every state; like ConstantCritic it knows no goal radius
    (candidates are ranked by Q alone) and no prior (every skill is in the support)."""

    def __init__(self, q: torch.Tensor) -> None:
        super().__init__(len(q))
        self.q = q
        self.calls = 0

    def q_values(self, s: torch.Tensor, m: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        return self.q[None].expand(s.shape[0], -1).clone()


def make_planner(
    generator: CandidateGenerator | None = None, critic: SkillCritic | TableCritic | None = None, **config: object
) -> SkillPlanner:
    values: dict[str, object] = dict(n_candidates=32, max_resamples=2, pos_start=0, pos_stop=POS_DIM, seed=0)
    values.update(config)
    return SkillPlanner(
        generator if generator is not None else LineGenerator(),
        DirectionTokenizer(),
        critic if critic is not None else TableCritic(torch.linspace(0.1, 0.8, NUM_DIRECTIONS)),
        PlannerConfig(**values),  # type: ignore[arg-type]
    )


def test_stand_ins_satisfy_the_protocols() -> None:
    assert isinstance(DirectionTokenizer(), TokenEncoder)
    assert isinstance(LineGenerator(), CandidateGenerator) and isinstance(ForkGenerator(), CandidateGenerator)
    assert isinstance(DistanceCritic(), SkillCritic) and isinstance(ConstantCritic(NUM_DIRECTIONS), SkillCritic)
    assert isinstance(TableCritic(torch.zeros(NUM_DIRECTIONS)), SkillCritic)


# ---- the filter ------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data(), envs=st.integers(1, 4), n=st.integers(1, 12), skills=st.integers(1, 10))
def test_filter_never_returns_a_masked_token_while_a_feasible_candidate_exists(
    data: st.DataObject, envs: int, n: int, skills: int
) -> None:
    def table(element: st.SearchStrategy, columns: int) -> torch.Tensor:
        rows = st.lists(st.lists(element, min_size=columns, max_size=columns), min_size=envs, max_size=envs)
        return torch.tensor(data.draw(rows))

    tokens = table(st.integers(0, skills - 1), n)
    masks = table(st.booleans(), skills)
    q = table(st.floats(-10, 10), skills)
    best, best_q, n_feasible = select_feasible(tokens, masks, q)
    for e in range(envs):
        feasible = [i for i in range(n) if masks[e, tokens[e, i]]]
        assert int(n_feasible[e]) == len(feasible)
        if feasible:
            chosen = int(tokens[e, best[e]])
            assert masks[e, chosen]
            assert best_q[e].item() == max(q[e, tokens[e, i]].item() for i in feasible)
        else:
            assert best_q[e].item() == -math.inf


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=NUM_DIRECTIONS, max_size=NUM_DIRECTIONS), min_size=1, max_size=4))
def test_plan_never_returns_a_masked_token_unflagged(masks: list[list[bool]]) -> None:
    mask = torch.tensor(masks)
    # 128 candidates per env: a given direction is missed with probability (7/8) ** 128 < 1e-7
    plan = make_planner(n_candidates=128).plan(torch.zeros(mask.shape[0], STATE_DIM), mask)
    for e in range(mask.shape[0]):
        if plan.used_fallback[e]:
            assert plan.n_feasible[e] == 0 and not mask[e, plan.token[e]] and not mask[e].any()
        else:
            assert mask[e, plan.token[e]] and plan.n_feasible[e] > 0
    # candidates cover every direction, so the best unmasked direction is the best-Q one
    q = torch.linspace(0.1, 0.8, NUM_DIRECTIONS)
    for e in torch.nonzero(~plan.used_fallback).squeeze(1).tolist():
        assert plan.q[e].item() == pytest.approx(q[mask[e]].max().item())


# ---- batched plan vs Algorithm 2 ---------------------------------------------------------------------------------


def test_batched_plan_and_one_at_a_time_reference_agree_on_feasibility() -> None:
    # candidates only head right (-60 .. 60 degrees): tokens 7, 0, 1 are reachable, the left half never is
    generator = LineGenerator(-math.pi / 3, math.pi / 3)
    critic = TableCritic(torch.linspace(0.1, 0.8, NUM_DIRECTIONS))
    planner = make_planner(generator, critic, n_candidates=16, max_resamples=1)
    masks = torch.zeros(5, NUM_DIRECTIONS, dtype=torch.bool)
    masks[0, :] = True  # everything allowed
    masks[1, [0]] = True  # only straight right
    masks[2, [3, 4, 5]] = True  # only unreachable left-hand tokens
    masks[3, [1, 4]] = True  # one reachable, one not
    # row 4: nothing allowed
    states = torch.zeros(5, STATE_DIM)

    generator.calls = critic.calls = 0
    batched = planner.plan(states, masks)
    batched_calls = (generator.calls, critic.calls)
    reference = plan_one_at_a_time(planner, states, masks)

    expected_fallback = [False, False, True, False, True]
    assert batched.used_fallback.tolist() == expected_fallback
    assert reference.used_fallback.tolist() == expected_fallback
    for plan in (batched, reference):
        ok = ~plan.used_fallback
        assert masks[ok.nonzero().squeeze(1), plan.token[ok]].all()
        assert plan.trajectory.shape == (5, HORIZON, STATE_DIM + ACTION_DIM)
    # both pick the best-Q feasible token (all reachable tokens appear among 16 candidates)
    assert batched.token[ok].tolist() == reference.token[ok].tolist() == [7, 0, 1]
    # one generator call for all envs, one more for the infeasible ones only; one critic call
    assert batched_calls == (2, 1)
    assert batched.rounds.tolist() == [1, 1, 2, 1, 2]


def test_toward_feasible_fallback_heads_for_the_nearest_permitted_skill_start() -> None:
    planner = SkillPlanner(
        LineGenerator(-math.pi / 3, math.pi / 3),  # tokens 7, 0, 1: none permitted below
        DirectionTokenizer(),
        TableCritic(torch.linspace(0.8, 0.1, NUM_DIRECTIONS)),
        PlannerConfig(n_candidates=64, max_resamples=0, pos_stop=POS_DIM),
    )
    masks = torch.zeros(2, NUM_DIRECTIONS, dtype=torch.bool)
    masks[0, 2] = True  # the permitted skill starts straight up: go as far up as the candidates allow
    masks[1, 6] = True  # ... straight down
    plan = planner.plan(torch.zeros(2, STATE_DIM), masks)
    assert plan.used_fallback.all()
    heading = plan.trajectory[:, -1, 1]  # y at the end of the chosen candidate
    assert heading[0] > STEP * (HORIZON - 1) * 0.8 and heading[1] < -STEP * (HORIZON - 1) * 0.8
    reference = plan_one_at_a_time(planner, torch.zeros(2, STATE_DIM), masks)
    assert reference.used_fallback.all() and reference.trajectory[0, -1, 1] > 0 > reference.trajectory[1, -1, 1]


def test_fallback_heads_along_the_demo_route_across_a_gap() -> None:
    """An agent whose candidates are all refused where the demo's route breaks within one skill ahead of it takes the
    candidate that ends nearest to the route H steps on, across the break, not the one nearest to any demo window
    (which, at a gap, lies behind it); without a break ahead the fallback is the nearest demo window, as before."""
    # the route runs along +x from (-1, 0) to (0, 0), breaks, and goes on from (1, 0) to (2, 0); the agent is at
    # the gap's start, so the demo window nearest to any candidate is behind it, and the route ahead is across it
    xs = torch.cat([torch.linspace(-1.0, 0.0, 11), torch.linspace(1.0, 2.0, 11)])
    route = torch.stack([xs, torch.zeros_like(xs)], dim=1)
    t = torch.arange(HORIZON, dtype=torch.float32)[:, None] * STEP
    behind = route[:8, None] + t * torch.tensor([1.0, 0.0])  # (8, H, P) windows of the first piece
    two_pieces = torch.cat([torch.zeros(11, dtype=torch.long), torch.ones(11, dtype=torch.long)])
    masks = torch.zeros(1, NUM_DIRECTIONS, dtype=torch.bool)
    masks[0, 4] = True  # only "west" is permitted, and no candidate matches a demo window of it
    planner = SkillPlanner(
        LineGenerator(), DirectionTokenizer(), TableCritic(torch.zeros(NUM_DIRECTIONS)),
        PlannerConfig(n_candidates=64, max_resamples=0, pos_stop=POS_DIM, match_radius=0.01),
    )  # fmt: skip
    ends = []
    for pieces in (two_pieces, torch.zeros(22, dtype=torch.long)):
        anchors = DemoWindows(behind, torch.zeros(8, dtype=torch.long), route, pieces)
        plan = planner.plan(torch.zeros(1, STATE_DIM), masks, anchors=anchors)
        assert plan.used_fallback.all()
        ends.append(plan.trajectory[0, -1, :POS_DIM])
    assert ends[0][0] > 0.8 * STEP * (HORIZON - 1) and abs(float(ends[0][1])) < 0.1  # on along the route, across
    assert ends[1][0] < 0  # no break ahead: nearest to a demo window, back towards the first piece


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="n_candidates"):
        PlannerConfig(n_candidates=0)
    with pytest.raises(TypeError, match="fallback"):
        PlannerConfig(fallback="toward_feasible")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="pos_stop"):
        PlannerConfig(pos_start=2, pos_stop=2)


# ---- the real components ------------------------------------------------------------------------------------------


def test_plan_with_the_real_generator_and_critic() -> None:
    generator_config = GeneratorConfig(
        horizon=HORIZON, hidden=8, depth=1, norm_groups=4, cond_dim=16, timestep_embed_dim=8, inference_steps=3,
        device="cpu",
    )
    generator = TrajectoryGenerator(generator_config, STATE_DIM, ACTION_DIM).eval()
    critic_config = CriticConfig(hidden=16, layers=1, device="cpu")
    critic = MaskedCritic(critic_config, STATE_DIM, POS_DIM, NUM_DIRECTIONS, HORIZON).eval()
    planner = SkillPlanner(generator, DirectionTokenizer(), critic, PlannerConfig(n_candidates=16, pos_stop=POS_DIM))
    masks = torch.ones(3, NUM_DIRECTIONS, dtype=torch.bool)
    masks[1, ::2] = False
    plan = planner.plan(torch.randn(3, STATE_DIM), masks, torch.randn(3, POS_DIM))
    assert plan.trajectory.shape == (3, HORIZON, STATE_DIM + ACTION_DIM)
    assert plan.token.shape == plan.q.shape == plan.n_feasible.shape == plan.used_fallback.shape == (3,)
    ok = ~plan.used_fallback
    assert masks[ok.nonzero().squeeze(1), plan.token[ok]].all()
    assert not plan.used_fallback[0]  # an all-open mask always has a feasible candidate


class DistanceCritic:
    """Stand-in critic whose value of every skill falls with the state's distance to the goal."""

    discount = 0.9
    goal_radius = 0.05

    def q_values(self, s: torch.Tensor, m: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self.state_values(s, m, g)[:, None].expand(-1, NUM_DIRECTIONS).clone()

    def state_values(self, s: torch.Tensor, m: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        assert g is not None
        return torch.exp(-torch.linalg.vector_norm(s[:, :POS_DIM] - g, dim=-1))

    def skill_support(self, s: torch.Tensor) -> torch.Tensor:
        return torch.ones(s.shape[0], NUM_DIRECTIONS, dtype=torch.bool)


@pytest.mark.parametrize("goal", [(1.0, 0.3), (0.0, -0.28)])
def test_lookahead_picks_the_candidate_that_ends_best(goal: tuple[float, float]) -> None:
    """Every skill has the same Q here, so token scoring cannot choose; the lookahead takes the candidate whose end
    state the critic values most, or one that reaches the goal (reward 1 beats any discounted value)."""
    n = 64
    planner = make_planner(critic=DistanceCritic(), n_candidates=n, score="token_lookahead")
    states = torch.zeros(1, STATE_DIM)
    goals = torch.tensor([goal])
    plan = planner.plan(states, torch.ones(1, NUM_DIRECTIONS, dtype=torch.bool), goals)
    # the same draws as the planner's first round (its generator is seeded with config.seed = 0)
    angle = 2 * math.pi * torch.rand(1, n, generator=torch.Generator().manual_seed(0))
    ends = torch.stack([angle.cos(), angle.sin()], dim=-1)[0] * STEP * (HORIZON - 1)
    path = torch.arange(HORIZON)[:, None, None] * STEP * torch.stack([angle.cos(), angle.sin()], dim=-1)[0]
    reaches = (torch.linalg.vector_norm(path - goals, dim=-1) <= DistanceCritic.goal_radius).any(dim=0)
    nearest = int(torch.linalg.vector_norm(ends - goals, dim=-1).argmin())
    best = int(reaches.float().argmax()) if reaches.any() else nearest
    torch.testing.assert_close(plan.trajectory[0, -1, :POS_DIM], ends[best])
    if goal == (0.0, -0.28):
        assert bool(reaches.any())  # the case where some candidate reaches the goal is exercised


@pytest.mark.parametrize("score", ["best", "lookahead", "token_goal"])
def test_unknown_score_is_refused(score: str) -> None:
    with pytest.raises(ValueError, match="PlannerConfig.score"):
        PlannerConfig(score=score)


def test_defaults_are_the_shipped_choice() -> None:
    config = PlannerConfig()
    assert config.score == "token_lookahead" and config.prefer_support


class PriorCritic(DistanceCritic):
    """DistanceCritic with a Q table per skill and a skill prior that rules out the skills in ``unsupported``."""

    def __init__(self, q: torch.Tensor, unsupported: list[int]) -> None:
        self.q, self.unsupported = q, unsupported

    def q_values(self, s: torch.Tensor, m: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self.q[None].expand(s.shape[0], -1).clone()

    def skill_support(self, s: torch.Tensor) -> torch.Tensor:
        support = torch.ones(s.shape[0], NUM_DIRECTIONS, dtype=torch.bool)
        support[:, self.unsupported] = False
        return support


def test_prefer_support_ranks_skills_the_data_takes_at_the_state_first() -> None:
    q = torch.linspace(0.1, 0.8, NUM_DIRECTIONS)  # skill 7 has the highest Q, but the data never takes it here
    masks = torch.ones(1, NUM_DIRECTIONS, dtype=torch.bool)
    goals = torch.tensor([[5.0, 5.0]])
    plain = make_planner(critic=PriorCritic(q, [7]), n_candidates=128, score="token", prefer_support=False)
    assert plain.plan(torch.zeros(1, STATE_DIM), masks, goals).token.item() == 7
    supported = make_planner(critic=PriorCritic(q, [7]), n_candidates=128, score="token", prefer_support=True)
    assert supported.plan(torch.zeros(1, STATE_DIM), masks, goals).token.item() == 6
    # where no permitted candidate is supported, a permitted one is still taken, unflagged
    only = torch.zeros(1, NUM_DIRECTIONS, dtype=torch.bool)
    only[0, 7] = True
    plan = supported.plan(torch.zeros(1, STATE_DIM), only, goals)
    assert plan.token.item() == 7 and not plan.used_fallback.any()


def test_token_lookahead_orders_candidates_of_the_best_skill_by_where_they_end() -> None:
    q = torch.full((NUM_DIRECTIONS,), 0.5)
    q[1] = 0.9  # the 45-degree skill is best; the goal lies far out at 60 degrees
    goals = torch.tensor([[10 * math.cos(math.pi / 3), 10 * math.sin(math.pi / 3)]])
    n = 256
    planner = make_planner(critic=PriorCritic(q, []), n_candidates=n, score="token_lookahead")
    plan = planner.plan(torch.zeros(1, STATE_DIM), torch.ones(1, NUM_DIRECTIONS, dtype=torch.bool), goals)
    assert plan.token.item() == 1
    angle = 2 * math.pi * torch.rand(1, n, generator=torch.Generator().manual_seed(0))[0]
    in_skill = (angle > math.pi / 8) & (angle < 3 * math.pi / 8)
    best = angle[in_skill][(angle[in_skill] - math.pi / 3).abs().argmin()]
    end = plan.trajectory[0, -1, :POS_DIM]
    torch.testing.assert_close(torch.atan2(end[1], end[0]), best)


class ForkGenerator:
    """Stand-in generator for the two-skill lookahead: from the origin, half the candidates head east to A and half
    north to B; from A every continuation heads back west, from anywhere else every continuation heads east."""

    state_dim = STATE_DIM
    goal_conditioned = False
    device = torch.device("cpu")

    def sample(
        self, states: torch.Tensor, n: int, goals: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        pos = states[:, :POS_DIM]
        at_origin = torch.linalg.vector_norm(pos, dim=-1) < 1e-6
        at_a = (pos[:, 0] > 0.2) & (pos[:, 1].abs() < 0.1)
        east, north, west = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 0.0])
        direction = torch.where(at_a[:, None], west, east)[:, None].expand(-1, n, -1).clone()  # (B, n, 2)
        direction[at_origin, 1::2] = north
        t = torch.arange(HORIZON, dtype=torch.float32)[None, None, :, None] * STEP
        tau = torch.zeros(states.shape[0], n, HORIZON, STATE_DIM + ACTION_DIM)
        tau[..., :POS_DIM] = pos[:, None, None] + t * direction[:, :, None]
        tau[..., STATE_DIM:] = direction[:, :, None]
        return tau


def test_two_skill_lookahead_avoids_an_end_state_whose_continuations_are_all_masked() -> None:
    """A (east) ends nearer the goal than B (north), so one skill of lookahead takes A; but from A the only
    continuation heads west, a masked skill, so A leads to the sink. Two skills of lookahead see it and take B."""
    masks = torch.zeros(1, NUM_DIRECTIONS, dtype=torch.bool)
    masks[0, [0, 2]] = True  # east and north permitted, west (4) masked
    goals = torch.tensor([[1.0, 0.1]])
    states = torch.zeros(1, STATE_DIM)
    plans = {}
    for depth in (1, 2):
        planner = make_planner(ForkGenerator(), DistanceCritic(), n_candidates=8, lookahead_depth=depth)
        plans[depth] = planner.plan(states, masks, goals)
    assert plans[1].token.item() == 0 and plans[2].token.item() == 2
    assert not plans[2].used_fallback.any()


def test_lookahead_depth_and_candidates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lookahead_depth"):
        PlannerConfig(lookahead_depth=0)
    with pytest.raises(ValueError, match="lookahead_candidates"):
        PlannerConfig(lookahead_candidates=0)


def east_demo() -> DemoWindows:
    """One demo window: due east from the origin (token 0 of the direction tokenizer)."""
    t = torch.arange(HORIZON, dtype=torch.float32)[:, None] * STEP
    return DemoWindows(windows=(t * torch.tensor([1.0, 0.0]))[None], tokens=torch.tensor([0]))


def test_demo_match_keeps_only_candidates_near_the_demo_window_of_their_token() -> None:
    """Every candidate heads within 22.5 degrees of east, so all share the permitted token 0, and the goal pulls
    towards the most north-easterly one. With the demo's window and a match radius the planner may only take a
    candidate that runs near the demo's eastward window; without them it takes the one nearest the goal."""
    goals = torch.tensor([[2.0, 0.6]])
    states, masks = torch.zeros(1, STATE_DIM), torch.ones(1, NUM_DIRECTIONS, dtype=torch.bool)
    radius = 0.01
    generator = LineGenerator(-math.pi / 8, math.pi / 8)
    planner = make_planner(generator, DistanceCritic(), n_candidates=64, score="token_lookahead", match_radius=radius)
    free = planner.plan(states, masks, goals)
    matched = make_planner(
        generator, DistanceCritic(), n_candidates=64, score="token_lookahead", match_radius=radius
    ).plan(states, masks, goals, anchors=east_demo())
    assert free.token.item() == matched.token.item() == 0
    def distance(plan: object) -> float:
        to_same, _ = demo_distance(plan.trajectory[None, :, :, :POS_DIM], plan.token[None], east_demo())
        return to_same.item()

    assert distance(free) > radius, "without the demo the goal should pull the choice off the east window"
    assert distance(matched) <= radius and not matched.used_fallback.any()


def test_demo_match_falls_back_to_the_candidate_nearest_the_demo() -> None:
    """No candidate passes near the demo's eastward window (all head north-east or further round): the planner
    flags a fallback and returns the candidate nearest to the demo, the most easterly one."""
    generator = LineGenerator(math.pi / 6, math.pi)
    planner = make_planner(generator, TableCritic(torch.zeros(NUM_DIRECTIONS)), n_candidates=32, max_resamples=0,
                           match_radius=0.01)  # fmt: skip
    masks = torch.ones(1, NUM_DIRECTIONS, dtype=torch.bool)
    plan = planner.plan(torch.zeros(1, STATE_DIM), masks, anchors=east_demo())
    assert plan.used_fallback.all()
    angle = math.pi / 6 + (math.pi - math.pi / 6) * torch.rand(1, 32, generator=torch.Generator().manual_seed(0))[0]
    end = plan.trajectory[0, -1, :POS_DIM]
    torch.testing.assert_close(torch.atan2(end[1], end[0]), angle.min())


def test_demo_match_radius_must_be_positive() -> None:
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="match_radius"):
            PlannerConfig(match_radius=bad)


def test_constant_critic_plans_like_a_table_of_zeros() -> None:
    """ConstantCritic ranks by its constant Q alone, like a table of zeros, under every score: both choose the same
    candidates, and only the environment whose mask permits nothing falls back."""
    states, goals = torch.zeros(3, STATE_DIM), torch.tensor([[0.3, 0.0]] * 3)
    masks = torch.zeros(3, NUM_DIRECTIONS, dtype=torch.bool)
    masks[0] = True
    masks[1, [1, 2]] = True  # masks[2] permits nothing: a fallback
    for score in ("token", "token_lookahead"):
        plans = [
            make_planner(critic=critic, score=score, max_resamples=0).plan(states, masks, goals)
            for critic in (ConstantCritic(NUM_DIRECTIONS), TableCritic(torch.zeros(NUM_DIRECTIONS)))
        ]
        assert torch.equal(plans[0].trajectory, plans[1].trajectory)
        assert plans[0].used_fallback.tolist() == plans[1].used_fallback.tolist() == [False, False, True]
