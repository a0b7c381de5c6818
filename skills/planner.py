"""Skill planner: propose sub-trajectories with the generator, drop those whose token is masked, pick with the critic.
``SkillPlanner.plan`` does it batched on the device for E environments. The paper's Algorithm 2, one environment
and one candidate at a time, is the reference `mstt bench plan` compares against (agent/experiments/bench.py).

Scores (``PlannerConfig.score``, a table in ``SkillPlanner``) and ``prefer_support`` decide among the permitted
candidates; the mask only filters. Ranking by the skill's Q alone (``score = "token"``, the paper's choice) cannot
separate candidates of one skill, and with position-dominated skills one skill holds windows heading every way at a
corner or from rest. ``"token_lookahead"`` also looks at where each candidate goes: one whose positions reach the goal
scores the goal reward, and the candidates of the best skill are ordered by the value of the state they end in.
``prefer_support`` ranks first the candidates whose skill the data takes at the current state, since the critic's Q is
trained on those alone. ``lookahead_depth`` 2 looks one skill further: the generator proposes continuations from each
candidate's end state, the mask filters them, and the best permitted continuation's end state is valued (a candidate
from which no continuation is permitted leads to the sink).

Demo match (``match_radius``, off by default; the paper filters by token alone): given the demo's own windows
(``DemoWindows``, passed to ``plan`` as ``anchors``), a candidate is permitted only if its token is unmasked and it
passes within ``match_radius`` (RMS over its H positions, world units) of one of the demo's windows of that token. A
token stands for every data window it quantises; next to a forbidden region that can be too coarse (Fetch: even the
oracle mask, built from the true zone, let 41-66% of episodes clip the zone a few centimetres from the start).

Fallback (when no candidate of an environment survives the filter after ``max_resamples`` resamples): with the demo
match, the candidate nearest to any demo window; otherwise the candidate that ends nearest to where a permitted skill
starts (the tokenizer's ``token_starts()``), so an agent that has left the demo's skills heads back to them instead of
wandering on among forbidden ones. It is flagged in ``Plan.used_fallback`` and its token is masked (or off the demo),
so callers must check the flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, cast, get_args, runtime_checkable

import torch
from einops import rearrange

from mstt.skills.critic.bellman import GOAL_REWARD, TERMINATION_REWARD
from mstt.skills.masks import DemoWindows

Tensor = torch.Tensor
Score = Literal["token", "token_lookahead"]
SCORES: tuple[str, ...] = get_args(Score)
"""The names ``PlannerConfig.score`` accepts (the keys of ``SkillPlanner``'s score table)."""
SUPPORT_PENALTY = 2.0
"""'prefer_support': subtracted from the score of a candidate whose skill is outside the data's support at the state
(scores lie in [0, 1], so any supported permitted candidate outranks every unsupported one)."""


@runtime_checkable
class TokenEncoder(Protocol):
    """What the planner needs from the skill tokenizer: windows to tokens, and where each token's skill starts."""

    horizon: int
    codebook_size: int

    def encode(self, windows: Tensor) -> Tensor:
        """(B, H, P) position windows -> (B,) long tokens in [0, codebook_size)."""
        ...

    def token_starts(self) -> Tensor:
        """(L, P) world position where each token's skill starts (the fallback steers towards permitted ones)."""
        ...


@runtime_checkable
class CandidateGenerator(Protocol):
    """What the planner needs from the sub-trajectory generator."""

    state_dim: int
    """S: a candidate's observations are its first S features."""
    goal_conditioned: bool
    """Whether ``sample`` reads goals (the planner passes None otherwise)."""
    device: torch.device
    """Where candidates are made; the planner works there."""

    def sample(
        self, states: Tensor, n: int, goals: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B, S) start states -> (B, n, H, S + A) candidate sub-trajectories."""
        ...


@runtime_checkable
class SkillCritic(Protocol):
    """What the planner needs from the critic."""

    goal_radius: float | None
    """A candidate whose positions come this close to the goal reaches it. None: the critic knows no goal, and its
    candidates are ranked by their skill's Q alone whatever the score (the constant critic)."""
    discount: float
    """Skill-level discount gamma ** H of the lookahead."""

    def q_values(self, s: Tensor, m: Tensor, g: Tensor | None = None) -> Tensor:
        """(B, S), (B, L) bool, (B, G) -> (B, L) Q over all skills."""
        ...

    def state_values(self, s: Tensor, m: Tensor, g: Tensor | None = None) -> Tensor:
        """(B, S), (B, L) bool, (B, G) -> (B,) V(s, m, g): the best Q over permitted skills in the data's support."""
        ...

    def skill_support(self, s: Tensor) -> Tensor:
        """(B, S) -> (B, L) bool: the skills the data takes at s (the critic's skill prior above its threshold)."""
        ...


@dataclass
class PlannerConfig:
    """How candidates are proposed, filtered and chosen."""

    n_candidates: int = 64
    """N, candidates sampled per environment per round (one generator call for all E * N)."""
    max_resamples: int = 3
    """Extra rounds, only for environments where no candidate survived the mask (>= 0)."""
    pos_start: int = 0
    """First observation index of the position the tokenizer reads (the pos slice is [pos_start, pos_stop))."""
    pos_stop: int = 2
    """One past the last observation index of the position."""
    seed: int = 0
    """Seeds the planner's own torch generator (candidate noise)."""
    sample_steps: int | None = None
    """Denoising steps per candidate batch; None keeps the generator's own inference_steps."""
    prefer_support: bool = True
    """Rank permitted candidates whose skill is in the data's support at the current state (the critic's skill prior
    p(z | s) above its threshold, the set its Bellman max uses) above all others: Q is trained on data skills only,
    and a generator sample that runs through a wall gets a skill the data never takes there, with an untrained Q."""
    score: Score = "token_lookahead"
    """How the critic ranks the permitted candidates. 'token': Q(s, z, m, g) of the candidate's skill (the paper's
    choice; candidates of one skill tie). 'token_lookahead': the same, except that a candidate whose own positions
    reach the goal scores the goal reward, 1 (a skill's Q is its expected return; this candidate's return is known),
    and the candidates that tie on it (those of the best skill) are ordered by the lookahead: gamma_H * V(s_H, m, g)
    at the state each ends in (the critic's ``state_values``; one more critic call for all E * N end states). A
    position-dominated skill barely tells directions apart at a corner; where each candidate ends does."""
    lookahead_depth: int = 1
    """Skills the lookahead looks ahead: 1 values each candidate's end state with the critic; 2 also samples
    ``lookahead_candidates`` continuations from it, filters them by the mask and values the best one's end state.
    From rest, one window barely leaves the start cell, where the critic cannot tell the routes apart; the second
    skill's tokens do, and the mask removes continuations into walled-off routes."""
    lookahead_candidates: int = 8
    """Continuations sampled per candidate and level when ``lookahead_depth`` > 1."""
    match_radius: float | None = None
    """With a demo's windows passed to ``plan``: a permitted candidate must also pass within this RMS distance (world
    units) of one of the demo's windows of its token (see the module doc string). None: the token alone decides."""
    def __post_init__(self) -> None:
        if self.lookahead_depth < 1:
            raise ValueError(f"PlannerConfig.lookahead_depth must be >= 1, got {self.lookahead_depth!r}")
        if self.match_radius is not None and not (math.isfinite(self.match_radius) and self.match_radius > 0):
            raise ValueError(
                f"PlannerConfig.match_radius must be a finite number > 0 or None, got {self.match_radius!r}"
            )
        if self.lookahead_candidates < 1:
            raise ValueError(f"PlannerConfig.lookahead_candidates must be >= 1, got {self.lookahead_candidates!r}")
        if self.n_candidates < 1:
            raise ValueError(f"PlannerConfig.n_candidates must be >= 1, got {self.n_candidates!r}")
        if self.max_resamples < 0:
            raise ValueError(f"PlannerConfig.max_resamples must be >= 0, got {self.max_resamples!r}")
        if self.score not in SCORES:
            raise ValueError(f"PlannerConfig.score must be one of {SCORES}, got {self.score!r}")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"PlannerConfig.sample_steps must be >= 1 or None, got {self.sample_steps!r}")
        if not 0 <= self.pos_start < self.pos_stop:
            raise ValueError(
                f"PlannerConfig.pos_stop must exceed pos_start >= 0, got pos_start={self.pos_start!r}, "
                f"pos_stop={self.pos_stop!r}"
            )

    @property
    def pos_slice(self) -> slice:
        return slice(self.pos_start, self.pos_stop)


@dataclass
class Plan:
    """One planning decision per environment."""

    trajectory: Tensor
    """(E, H, S + A) chosen sub-trajectory."""
    token: Tensor
    """(E,) long skill token of the chosen sub-trajectory (masked where used_fallback)."""
    q: Tensor
    """(E,) critic value Q(s, token, m, g) of the choice."""
    n_feasible: Tensor
    """(E,) long candidates that survived the mask in the round that decided (0 where used_fallback)."""
    used_fallback: Tensor
    """(E,) bool: no candidate survived the filter; the choice is the fallback (its token masked, or off the demo)."""
    rounds: Tensor
    """(E,) long sampling rounds used (1 + resamples)."""


def select_feasible(
    tokens: Tensor, masks: Tensor, q_all: Tensor, scores: Tensor | None = None, tie_break: Tensor | None = None,
    permitted: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pick the best unmasked candidate of each environment.

    Args:
        tokens: (E, N) long candidate tokens.
        masks: (E, L) bool skill masks.
        q_all: (E, L) Q values of every skill at each environment's state.
        scores: (E, N) per-candidate scores to rank by instead of their skill's Q (the lookahead score).
        tie_break: (E, N) orders the feasible candidates that share the best score (e.g. candidates of one skill).
        permitted: (E, N) bool, which candidates survive the filter, when more than the mask decides (demo match);
            default: their token is unmasked.

    Returns:
        ((E,) index of the best feasible candidate (arbitrary where none is feasible), (E,) its score or -inf where
        none is feasible, (E,) long number of feasible candidates).
    """
    feasible = masks.gather(1, tokens) if permitted is None else permitted  # (E, N)
    score = (q_all.gather(1, tokens) if scores is None else scores).masked_fill(~feasible, -math.inf)
    best_q, best = score.max(dim=1)
    if tie_break is not None:
        tied = (score == best_q[:, None]) & feasible
        best = torch.where(tied.any(dim=1), tie_break.masked_fill(~tied, -math.inf).argmax(dim=1), best)
    return best, best_q, feasible.sum(dim=1)


def demo_distance(positions: Tensor, tokens: Tensor, anchors: DemoWindows) -> tuple[Tensor, Tensor]:
    """(E, N, H, P) candidate positions, (E, N) their tokens -> ((E, N) RMS distance to the nearest demo window of the
    same token, inf where the demo has none; (E, N) RMS distance to the nearest demo window of any token)."""
    e, n, h, _ = positions.shape
    windows = anchors.windows.to(positions.device, positions.dtype)
    if windows.shape[1:] != positions.shape[2:]:
        raise ValueError(
            f"demo windows are {tuple(windows.shape[1:])} (H, P) but candidates are {tuple(positions.shape[2:])}"
        )
    flat = rearrange(positions, "e n h p -> (e n) (h p)")
    distance = torch.cdist(flat, rearrange(windows, "w h p -> w (h p)")) / math.sqrt(h)  # (E * N, W)
    same = tokens.reshape(-1, 1) == anchors.tokens.to(tokens.device)[None]
    to_same = distance.masked_fill(~same, math.inf).amin(dim=1)
    return rearrange(to_same, "(e n) -> e n", n=n), rearrange(distance.amin(dim=1), "(e n) -> e n", n=n)


class SkillPlanner:
    """Propose -> filter -> score, batched over environments and candidates, all on the generator's device."""

    def __init__(
        self,
        generator: CandidateGenerator,
        tokenizer: TokenEncoder,
        critic: SkillCritic,
        config: PlannerConfig,
        device: torch.device | str | None = None,
    ) -> None:
        self.generator, self.tokenizer, self.critic, self.config = generator, tokenizer, critic, config
        self.num_skills = int(tokenizer.codebook_size)
        self.device = torch.device(device) if device is not None else generator.device
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)
        self._token_starts: Tensor | None = None
        """(L, P) where each skill starts, decoded once on the first fallback."""

    # ---- pieces ---------------------------------------------------------------------------------------------

    def propose(self, states: Tensor, goals: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        """(E, S) -> ((E, n, H, S + A) candidates, (E, n) tokens): one generator call, one tokenizer call."""
        steps = {} if self.config.sample_steps is None else {"steps": self.config.sample_steps}
        candidates = self.generator.sample(
            states, n, goals=goals if self.generator.goal_conditioned else None, generator=self.rng, **steps
        )
        positions = rearrange(candidates[..., self.config.pos_slice], "e n h p -> (e n) h p")
        tokens = self.tokenizer.encode(positions).to(self.device, torch.long)
        return candidates, rearrange(tokens, "(e n) -> e n", n=n)

    def _support(self, states: Tensor) -> Tensor | None:
        """(E, S) -> (E, L) bool skills in the data's support at each state (the critic's prior), or None when
        ``prefer_support`` is off."""
        return self.critic.skill_support(states) if self.config.prefer_support else None

    def _permitted(
        self, candidates: Tensor, tokens: Tensor, masks: Tensor, anchors: DemoWindows | None
    ) -> tuple[Tensor, Tensor | None]:
        """(E, N, H, S + A) candidates -> ((E, N) bool survivors of the filter, (E, N) distance to the nearest demo
        window or None): the token is unmasked and, with anchors and ``match_radius``, the candidate passes near one
        of the demo's windows of that token."""
        permitted = masks.gather(1, tokens)
        if anchors is None or self.config.match_radius is None:
            return permitted, None
        to_same, to_any = demo_distance(candidates[..., self.config.pos_slice].float(), tokens, anchors)
        return permitted & (to_same <= self.config.match_radius), to_any

    def _candidate_scores(
        self, candidates: Tensor, tokens: Tensor, masks: Tensor, q_all: Tensor, goals: Tensor | None,
        support: Tensor | None = None, anchors: DemoWindows | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:  # fmt: skip
        """(E, N, H, S + A) candidates -> ((E, N) scores, (E, N) tie-breaks) as ``PlannerConfig.score`` and
        ``prefer_support`` say; None where the skill's Q alone decides. A critic without a goal radius is scored as
        'token'."""
        unsupported = None if support is None else (~support.gather(1, tokens)).to(q_all.dtype)
        score = self.config.score if self.critic.goal_radius is not None else "token"
        return self._SCORES[score](self, candidates, tokens, masks, q_all, goals, unsupported, anchors)

    def _token_score(
        self, candidates: Tensor, tokens: Tensor, masks: Tensor, q_all: Tensor, goals: Tensor | None,
        unsupported: Tensor | None, anchors: DemoWindows | None,
    ) -> tuple[Tensor | None, Tensor | None]:  # fmt: skip
        """'token': the skill's Q (None: ``select_feasible`` reads it), less SUPPORT_PENALTY off the support."""
        return (None if unsupported is None else q_all.gather(1, tokens) - SUPPORT_PENALTY * unsupported), None

    def _token_lookahead_score(
        self, candidates: Tensor, tokens: Tensor, masks: Tensor, q_all: Tensor, goals: Tensor | None,
        unsupported: Tensor | None, anchors: DemoWindows | None,
    ) -> tuple[Tensor | None, Tensor | None]:  # fmt: skip
        """'token_lookahead': the skill's Q, the goal reward for a candidate that reaches the goal, less
        SUPPORT_PENALTY off the support; ties broken by the lookahead value of where each candidate ends."""
        lookahead = self._lookahead(candidates, masks, goals, self.config.lookahead_depth, anchors)
        value = q_all.gather(1, tokens)
        if goals is not None:
            reached = self._reaches_goal(candidates, goals)
            value = torch.where(reached, torch.full_like(value, GOAL_REWARD), value)
        if unsupported is not None:
            value = value - SUPPORT_PENALTY * unsupported
        return value, lookahead

    _SCORES = {"token": _token_score, "token_lookahead": _token_lookahead_score}

    def _reaches_goal(self, candidates: Tensor, goals: Tensor) -> Tensor:
        """(E, N, H, S + A) candidates, (E, G) goals -> (E, N) bool: one of the candidate's positions is within the
        critic's goal radius."""
        positions = candidates[..., self.config.pos_slice]  # (E, N, H, P)
        distance = torch.linalg.vector_norm(positions - goals[:, None, None, :], dim=-1)
        return (distance <= self.critic.goal_radius).any(dim=-1)

    def _lookahead(
        self, candidates: Tensor, masks: Tensor, goals: Tensor | None, depth: int, anchors: DemoWindows | None = None
    ) -> Tensor:
        """(E, N, H, S + A) candidates -> (E, N) their value looking ``depth`` skills ahead.

        Depth 1: gamma_H * V(s_H, m, g) at the state the candidate ends in. Depth d > 1: the generator proposes
        ``lookahead_candidates`` continuations from that end state, the mask filters them, and the candidate is
        worth gamma_H times its best permitted continuation's depth-(d - 1) value (r_term, the sink's value, when
        none is permitted). A candidate whose positions reach the goal is worth the goal reward at any depth."""
        e, n = candidates.shape[:2]
        ends = rearrange(candidates[:, :, -1, : self.generator.state_dim], "e n s -> (e n) s")
        end_masks = masks.repeat_interleave(n, dim=0)
        end_goals = goals.repeat_interleave(n, dim=0) if goals is not None else None
        if depth <= 1:
            value = self.critic.state_values(ends, end_masks, end_goals)
        else:
            k = self.config.lookahead_candidates
            following, tokens = self.propose(ends, end_goals, k)  # (E * N, K, H, S + A)
            deeper = self._lookahead(following, end_masks, end_goals, depth - 1, anchors)  # (E * N, K)
            permitted, _ = self._permitted(following, tokens, end_masks, anchors)
            value = deeper.masked_fill(~permitted, -math.inf).amax(dim=1)
            value = torch.where(permitted.any(dim=1), value, torch.full_like(value, TERMINATION_REWARD))
        value = float(self.critic.discount) * rearrange(value, "(e n) -> e n", n=n)
        if goals is not None:
            value = torch.where(self._reaches_goal(candidates, goals), torch.full_like(value, GOAL_REWARD), value)
        return value

    def fallback(
        self, candidates: Tensor, masks: Tensor, to_demo: Tensor | None = None, states: Tensor | None = None,
        anchors: DemoWindows | None = None,
    ) -> Tensor:  # fmt: skip
        """(E, N, H, S + A) candidates none of which is permitted -> (E,) index of the fallback candidate.

        Where the demo's route (``anchors``) breaks within one skill (H steps) ahead of the route point nearest the
        agent (states (E, S)), the candidate that ends nearest to the route H steps on, across the break: the demo
        shows no skill there, and the agent must move on to where it shows them again. Elsewhere the candidate
        nearest to a demo window where ``to_demo`` (E, N) is given, else the one that ends nearest to where a
        permitted skill starts."""
        fallback = to_demo.argmin(dim=1) if to_demo is not None else self._toward_permitted(candidates, masks)
        if states is None or anchors is None or anchors.route is None or anchors.route_piece is None:
            return fallback
        ahead = int(self.tokenizer.horizon)
        route, piece = anchors.route.float(), anchors.route_piece  # (M, P), (M,)
        nearest = torch.cdist(states[:, self.config.pos_slice].float(), route).argmin(dim=1)  # (E,)
        onward = (nearest + ahead).clamp(max=route.shape[0] - 1)
        across_gap = piece[onward] != piece[nearest]  # (E,) the route ahead goes on after a gap
        ends = candidates[:, :, -1, self.config.pos_slice].float()  # (E, N, P)
        toward = torch.linalg.vector_norm(ends - route[onward][:, None], dim=-1).argmin(dim=1)
        return torch.where(across_gap, toward, fallback)

    def _toward_permitted(self, candidates: Tensor, masks: Tensor) -> Tensor:
        """(E, N, H, S + A), (E, L) -> (E,) the candidate that ends nearest to where a permitted skill starts."""
        if self._token_starts is None:
            self._token_starts = self.tokenizer.token_starts().to(self.device, torch.float32)
        ends = candidates[:, :, -1, self.config.pos_slice].float()  # (E, N, P)
        to_start = torch.cdist(ends, self._token_starts[None].expand(ends.shape[0], -1, -1))
        to_start = to_start.masked_fill(~masks[:, None, :], math.inf).amin(dim=-1)  # (E, N)
        return to_start.argmin(dim=1)

    # ---- batched plan ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def plan(
        self, states: Tensor, masks: Tensor, goals: Tensor | None = None, anchors: DemoWindows | None = None
    ) -> Plan:
        """Choose one sub-trajectory per environment.

        Args:
            states: (E, S) current observations.
            masks: (E, L) bool skill masks (True = allowed).
            goals: (E, G) goals (None for a fixed-goal critic and generator).
            anchors: the windows of the demo the masks come from, shared by every environment; with
                ``match_radius`` set they refine the filter (see the module doc string), otherwise they are unused.

        Returns:
            Plan; only ``used_fallback`` rows hold a masked token (or, with the demo match, one the demo holds
            elsewhere).
        """
        states, masks = states.to(self.device), masks.to(self.device, torch.bool)
        goals = goals.to(self.device) if goals is not None else None
        if masks.shape != (states.shape[0], self.num_skills):
            raise ValueError(f"masks must be (E={states.shape[0]}, L={self.num_skills}), got {tuple(masks.shape)}")
        n = self.config.n_candidates
        q_all = self.critic.q_values(states, masks, goals)  # (E, L): Q does not depend on the candidate, only z
        candidates, tokens = self.propose(states, goals, n)
        support = self._support(states)
        permitted, to_demo = self._permitted(candidates, tokens, masks, anchors)
        scores = self._candidate_scores(candidates, tokens, masks, q_all, goals, support, anchors)
        best, best_q, n_feasible = select_feasible(tokens, masks, q_all, *scores, permitted=permitted)
        rounds = torch.ones_like(n_feasible)
        for _ in range(self.config.max_resamples):
            empty = (n_feasible == 0).nonzero().squeeze(1)  # one host sync per round, not per candidate
            if empty.numel() == 0:
                break
            sub_goals = goals[empty] if goals is not None else None
            new_candidates, new_tokens = self.propose(states[empty], sub_goals, n)
            new_permitted, new_to_demo = self._permitted(new_candidates, new_tokens, masks[empty], anchors)
            new_scores = self._candidate_scores(
                new_candidates, new_tokens, masks[empty], q_all[empty], sub_goals,
                support[empty] if support is not None else None, anchors,
            )  # fmt: skip
            new_best, new_q, new_feasible = select_feasible(
                new_tokens, masks[empty], q_all[empty], *new_scores, permitted=new_permitted
            )
            candidates[empty], tokens[empty] = new_candidates, new_tokens
            if to_demo is not None:  # with anchors and a radius, every round measures it
                to_demo[empty] = cast(Tensor, new_to_demo)
            best[empty], best_q[empty], n_feasible[empty] = new_best, new_q, new_feasible
            rounds[empty] += 1
        used_fallback = n_feasible == 0
        if bool(used_fallback.any()):
            fallback = self.fallback(candidates, masks, to_demo, states, anchors)
            best = torch.where(used_fallback, fallback, best)
        env = torch.arange(states.shape[0], device=self.device)
        token = tokens[env, best]
        return Plan(
            trajectory=candidates[env, best],
            token=token,
            q=q_all[env, token],
            n_feasible=n_feasible,
            used_fallback=used_fallback,
            rounds=rounds,
        )


