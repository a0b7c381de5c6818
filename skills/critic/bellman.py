"""The masked skill-level Bellman target of the critic, as pure tensor functions: a masked skill leads to an absorbing
sink, and the bootstrap maxes (mellowmax) only over next skills that are unmasked and in the data's support.

The support filter (skills/prior.py): the critic is trained on the data's skills only, so a max over skills the data
never takes at s' would read untrained, over-estimated values.

Target smoothing: mellowmax, tau * log(mean_{feasible} exp(Q / tau)), instead of a hard max. It is a non-expansion,
so the masked operator stays a contraction, it never exceeds the max (no logsumexp-style over-estimation), and it
does not flip its bootstrap between near-tied skills from one step to the next. Temperature 0 gives the hard max.

Data-return lower bound (``continuation_return_bound``): where the data's own continuation from the sample reaches
the goal using only unmasked skills (every H-step window it runs, in order, has m(z) = 1), that continuation is a
feasible policy under m, so its discounted return gamma_H ** j lower-bounds the masked optimum. Training takes
max(masked Bellman target, bound): it carries value along a long route in one update instead of one skill per round of
bootstrapping through the network, and never raises a target above what the data shows is possible.
"""

from __future__ import annotations

import math

import torch

TERMINATION_REWARD = 0.0
"""r_term: the value of the absorbing sink a masked skill leads to (and the bootstrap when nothing is feasible)."""
GOAL_REWARD = 1.0
"""Skill-level reward when the window's positions come within the goal radius of g (the episode then ends)."""

Tensor = torch.Tensor


def goal_reached(positions: Tensor, goals: Tensor, radius: float) -> Tensor:
    """(B, H, P) window positions, (B, P) goals -> (B,) bool: some position is within ``radius`` of g."""
    return (torch.linalg.vector_norm(positions - goals[:, None], dim=-1) <= radius).any(dim=1)


def masked_soft_max(values: Tensor, allowed: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Mellowmax of ``values`` over the ``allowed`` entries of each row.

    Args:
        values: (B, L) Q values.
        allowed: (B, L) bool, the entries the max may pick.
        temperature: mellowmax temperature; 0 gives the hard max.

    Returns:
        ((B,) smoothed max, meaningless where a row allows nothing; (B,) bool, whether a row allows anything).
    """
    any_allowed = allowed.any(dim=-1)
    if temperature == 0:
        best = values.masked_fill(~allowed, -math.inf).amax(dim=-1)
    else:
        count = allowed.sum(dim=-1).clamp_min(1).to(values.dtype)
        scaled = (values / temperature).masked_fill(~allowed, -math.inf)
        best = temperature * (torch.logsumexp(scaled, dim=-1) - torch.log(count))
    return torch.where(any_allowed, best, torch.zeros_like(best)), any_allowed


def masked_bellman_target(
    reward: Tensor,
    done: Tensor,
    taken_unmasked: Tensor,
    next_q: Tensor,
    next_allowed: Tensor,
    discount: float,
    temperature: float = 0.0,
    termination_reward: float = TERMINATION_REWARD,
) -> Tensor:
    """The masked skill-level Bellman target.

    y = r_term                                                  if m(z) = 0 (the skill leads to the sink)
    y = R + (1 - done) * discount * softmax_{z' allowed} Q'(s', z')   otherwise,
    where the bootstrap itself is r_term when no z' is allowed.

    Args:
        reward: (B,) skill-level reward R.
        done: (B,) bool, the window reached the goal.
        taken_unmasked: (B,) bool, m(z) for the taken skill.
        next_q: (B, L) target Q(s', ., m, g) (already the min over target critics).
        next_allowed: (B, L) bool, m(z') and the prior filter at s'.
        discount: skill-level discount gamma ** H.
        temperature: mellowmax temperature (0 = hard max).
        termination_reward: r_term.

    Returns:
        (B,) targets.
    """
    bootstrap, any_allowed = masked_soft_max(next_q, next_allowed, temperature)
    bootstrap = torch.where(any_allowed, bootstrap, torch.full_like(bootstrap, termination_reward))
    continuing = reward + (~done).to(reward.dtype) * discount * bootstrap
    return torch.where(taken_unmasked, continuing, torch.full_like(continuing, termination_reward))


def continuation_return_bound(
    positions: Tensor,
    valid: Tensor,
    goals: Tensor,
    tokens: Tensor,
    masks: Tensor,
    radius: float,
    discount: float,
    goal_reward: float = GOAL_REWARD,
) -> tuple[Tensor, Tensor]:
    """Discounted return of the data's own continuation, where it is a feasible policy under the mask.

    The continuation runs J consecutive H-step skills from the sample's state: skill j covers positions
    j*H .. j*H + H - 1 of ``positions`` and has token ``tokens[:, j]``. It earns ``goal_reward`` in the first skill
    j* that comes within ``radius`` of g, so its return is discount ** j * goal_reward. It is a lower bound on the
    masked optimum only if skills 0 .. j* are all unmasked.

    Args:
        positions: (B, J * H, P) positions the continuation reaches, in time order.
        valid: (B, J * H) bool, False past the end of the episode.
        goals: (B, P).
        tokens: (B, J) long tokens of the continuation's skills, PAD_TOKEN where there is none.
        masks: (B, L) bool.
        radius: goal radius.
        discount: skill-level discount gamma ** H.
        goal_reward: reward of the skill that reaches g.

    Returns:
        ((B,) bound, meaningless where not defined; (B,) bool, whether the bound is defined).
    """
    batch, skills = tokens.shape
    near = (torch.linalg.vector_norm(positions - goals[:, None], dim=-1) <= radius) & valid  # (B, J * H)
    reached = near.reshape(batch, skills, -1).any(dim=-1)  # (B, J)
    first = reached.to(torch.int8).argmax(dim=1)  # (B,) first skill that reaches g (0 where none does)
    unmasked = masks.gather(1, tokens.clamp_min(0)) & (tokens >= 0)  # (B, J)
    feasible_prefix = unmasked.to(torch.int8).cumprod(dim=1).bool()  # skills 0 .. j all unmasked
    defined = reached.any(dim=1) & feasible_prefix.gather(1, first[:, None]).squeeze(1)
    bound = goal_reward * discount ** first.to(goals.dtype)
    return bound, defined

