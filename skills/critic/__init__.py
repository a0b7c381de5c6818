"""Goal-conditioned masked-Bellman critic Q(s, z, m, g) over discrete skill tokens, trained offline on source data.
One module per concern; this package re-exports the public names, so ``from mstt.skills.critic import X`` works.

- configuration.py  CriticConfig, every hyper-parameter, validated at construction
- transitions.py    SkillTransitions and build_skill_transitions: (s, z, s') of the tokenised source episodes
- bellman.py        the masked Bellman target (sink for masked skills, mellowmax over feasible skills) and the
                    data-return lower bound, as pure tensor functions
- sampling.py       training batches: goals (hindsight, random, demo-like) and masks (Bernoulli, data segments)
- model.py          MaskedCritic: the Q ensemble and the skill prior network, save/load
- train.py          train_critic: prior fit, then TD steps with clipped double Q
- constant.py       ConstantCritic, Q = 0 everywhere (the mask_only method's critic)

The skill prior p(z | s) (its support filter and its fit) lives in skills/prior.py: the planner reads it too.
"""

from mstt.skills.critic.bellman import (
    GOAL_REWARD,
    TERMINATION_REWARD,
    continuation_return_bound,
    goal_reached,
    masked_bellman_target,
    masked_soft_max,
)
from mstt.skills.critic.configuration import DEFAULT_GOAL_RADIUS, MIN_BATCH_SIZE, CriticConfig
from mstt.skills.critic.constant import ConstantCritic
from mstt.skills.critic.model import CHECKPOINT_KIND, STD_FLOOR, MaskedCritic
from mstt.skills.critic.sampling import BatchSampler, ensure_both_taken_cases
from mstt.skills.critic.train import CriticReport, train_critic
from mstt.skills.critic.transitions import SkillTransitions, build_skill_transitions, window_count
from mstt.skills.masks import PAD_TOKEN
from mstt.skills.prior import DEFAULT_PRIOR_THRESHOLD, PRIOR_THRESHOLD_MODES, prior_support

__all__ = [
    "CHECKPOINT_KIND",
    "DEFAULT_GOAL_RADIUS",
    "DEFAULT_PRIOR_THRESHOLD",
    "GOAL_REWARD",
    "MIN_BATCH_SIZE",
    "PAD_TOKEN",
    "PRIOR_THRESHOLD_MODES",
    "STD_FLOOR",
    "TERMINATION_REWARD",
    "BatchSampler",
    "ConstantCritic",
    "CriticConfig",
    "CriticReport",
    "MaskedCritic",
    "SkillTransitions",
    "build_skill_transitions",
    "continuation_return_bound",
    "ensure_both_taken_cases",
    "goal_reached",
    "masked_bellman_target",
    "masked_soft_max",
    "prior_support",
    "train_critic",
    "window_count",
]
