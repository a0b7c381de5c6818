"""Configuration of the masked critic Q(s, z, m, g) and its skill prior: every hyper-parameter in one typed
dataclass, validated at construction so a bad value fails at config load with the field's name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from mstt.skills.prior import DEFAULT_PRIOR_THRESHOLD, PRIOR_THRESHOLD_MODES
from mstt.skills.validation import require, require_device

DEFAULT_GOAL_RADIUS = 0.45
"""PointMaze's success radius (world units)."""
MIN_BATCH_SIZE = 2
"""A batch must hold at least one sample with m(z) = 1 and one with m(z) = 0 for the taken skill."""

_check = partial(require, config="CriticConfig")


@dataclass
class CriticConfig:
    """Every hyper-parameter of the masked critic and its skill prior."""

    hidden: int = 256
    """Width of every hidden layer of the Q networks and of the prior network."""
    layers: int = 3
    """Number of hidden layers of each network (>= 1)."""
    layer_norm: bool = True
    """LayerNorm after every hidden linear layer; keeps bootstrapped Q targets from drifting."""
    gamma: float = 0.99
    """Per-environment-step discount in (0, 1]; one skill of H steps is discounted by gamma ** H."""
    lr: float = 3e-4
    """Adam learning rate of the Q networks."""
    weight_decay: float = 0.0
    """AdamW weight decay of the Q networks."""
    grad_clip_norm: float = 10.0
    """Max global gradient norm of a Q update (> 0)."""
    tau: float = 0.005
    """Soft target update rate in (0, 1]: target <- (1 - tau) target + tau online, after every step."""
    batch_size: int = 256
    """Transitions per TD step (>= 2: a batch must show both m(z) = 1 and m(z) = 0)."""
    steps: int = 20_000
    """Number of TD steps."""
    prior_steps: int = 2_000
    """Cross-entropy steps of the skill prior, run before the TD steps (the Bellman filter reads it)."""
    prior_lr: float = 1e-3
    """Adam learning rate of the skill prior."""
    keep_prob: float = 0.5
    """Probability that a token is unmasked in an i.i.d. Bernoulli training mask, in (0, 1)."""
    structured_mask_fraction: float = 0.5
    """Share of samples whose mask is a union of data segments' tokens instead of Bernoulli, in [0, 1]."""
    anchored_segment_fraction: float = 0.5
    """Share of structured masks whose first segment contains the sample's own window, in [0, 1]."""
    segment_goal_fraction: float = 0.5
    """Share of anchored structured masks whose goal is the end of the anchored segment (a demo-like sample: the
    mask holds a path from s to g); the others keep hindsight goals, in [0, 1]."""
    return_bound: bool = True
    """Target = max(masked Bellman target, discounted data return) where the data's continuation reaches the goal
    through unmasked skills only (``continuation_return_bound`` in skills/critic/bellman.py)."""
    return_bound_skills: int = 64
    """Consecutive skills of the data's continuation the bound looks through (>= 1); longer routes get no bound."""
    segments_per_mask: int = 2
    """A structured mask unions 1..segments_per_mask segments (uniform)."""
    segment_min_windows: int = 2
    """Shortest segment, in consecutive windows (>= 1)."""
    segment_max_windows: int = 16
    """Longest segment, in consecutive windows (>= segment_min_windows); clipped to the episode."""
    prior_threshold: float = DEFAULT_PRIOR_THRESHOLD
    """Bellman max only over z' with p(z' | s') >= this (absolute) or >= this * max p (relative), in [0, 1)."""
    prior_threshold_mode: str = "absolute"
    """'absolute' or 'relative' (see prior_threshold); relative adapts to large codebooks where 1/L < threshold."""
    target_temperature: float = 0.01
    """Mellowmax temperature of the Bellman max over feasible skills (>= 0; 0 = hard max). Q lies in [0, 1]."""
    n_critics: int = 2
    """Number of Q networks (>= 1); targets use the min over their target copies (clipped double Q)."""
    her_fraction: float = 0.8
    """Share of samples whose goal is a future achieved position of the same episode; the rest draw an
    achieved position of a random episode, in [0, 1]."""
    goal_radius: float = DEFAULT_GOAL_RADIUS
    """A window reaches g when one of its positions is within this distance (> 0)."""
    goal_conditioned: bool = True
    """False: fixed-goal mode, Q ignores g and every reward is measured against ``fixed_goal``."""
    fixed_goal: tuple[float, ...] | None = None
    """The goal position of fixed-goal mode (required there, ignored when goal_conditioned)."""
    log_every: int = 100
    """Steps between reads of the TD loss (each read syncs with the device)."""
    seed: int = 0
    """Seeds network initialisation and every sampled batch, mask and goal."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""

    def __post_init__(self) -> None:
        _check(self.hidden >= 1, "hidden", self.hidden, "must be >= 1")
        _check(self.layers >= 1, "layers", self.layers, "must be >= 1")
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.grad_clip_norm > 0, "grad_clip_norm", self.grad_clip_norm, "must be > 0")
        _check(0 < self.tau <= 1, "tau", self.tau, "must be in (0, 1]")
        _check(self.batch_size >= MIN_BATCH_SIZE, "batch_size", self.batch_size, f"must be >= {MIN_BATCH_SIZE}")
        _check(self.steps >= 0, "steps", self.steps, "must be >= 0")
        _check(self.prior_steps >= 0, "prior_steps", self.prior_steps, "must be >= 0")
        _check(self.prior_lr > 0, "prior_lr", self.prior_lr, "must be > 0")
        _check(0 < self.keep_prob < 1, "keep_prob", self.keep_prob, "must be in (0, 1)")
        fractions = ("structured_mask_fraction", "anchored_segment_fraction", "segment_goal_fraction", "her_fraction")
        for name in fractions:
            value = getattr(self, name)
            _check(0 <= value <= 1, name, value, "must be in [0, 1]")
        _check(self.return_bound_skills >= 1, "return_bound_skills", self.return_bound_skills, "must be >= 1")
        _check(self.segments_per_mask >= 1, "segments_per_mask", self.segments_per_mask, "must be >= 1")
        _check(self.segment_min_windows >= 1, "segment_min_windows", self.segment_min_windows, "must be >= 1")
        _check(
            self.segment_max_windows >= self.segment_min_windows,
            "segment_max_windows",
            self.segment_max_windows,
            f"must be >= segment_min_windows ({self.segment_min_windows})",
        )
        _check(0 <= self.prior_threshold < 1, "prior_threshold", self.prior_threshold, "must be in [0, 1)")
        _check(
            self.prior_threshold_mode in PRIOR_THRESHOLD_MODES,
            "prior_threshold_mode",
            self.prior_threshold_mode,
            f"must be one of {PRIOR_THRESHOLD_MODES}",
        )
        _check(self.target_temperature >= 0, "target_temperature", self.target_temperature, "must be >= 0")
        _check(self.n_critics >= 1, "n_critics", self.n_critics, "must be >= 1")
        _check(self.goal_radius > 0, "goal_radius", self.goal_radius, "must be > 0")
        if self.fixed_goal is not None:
            self.fixed_goal = tuple(float(v) for v in self.fixed_goal)
            _check(
                len(self.fixed_goal) >= 1 and all(math.isfinite(v) for v in self.fixed_goal),
                "fixed_goal",
                self.fixed_goal,
                "must be a non-empty sequence of finite numbers",
            )
        _check(
            self.goal_conditioned or self.fixed_goal is not None,
            "fixed_goal",
            self.fixed_goal,
            "must be set when goal_conditioned is False (fixed-goal mode measures rewards against it)",
        )
        _check(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require_device("CriticConfig", self.device)
