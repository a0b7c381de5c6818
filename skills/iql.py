"""Implicit Q-learning (Kostrikov et al., 2021) as pure loss functions plus one trainer, used over the
K discrete DDS skills (the high level), over primitive continuous actions (the IQL baseline, DARA's policy) and over
a world's discrete actions (DARA's policy in the house).

Losses return small frozen dataclasses. The update order, written once in ``IQLLearner.compute_loss``:
V by expectile regression towards the target twin-Q minimum; Q towards r + discount * (1 - done) * V(s');
the policy by advantage-weighted regression (AWR) with weights exp(temperature * (Q_target - V)), capped.
The target twin-Q follows the online one by EMA (torch.optim.swa_utils.AveragedModel, rate ``tau``).
Inputs are the observation concatenated with the desired goal (G = 0 for goal-free tasks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.layers import mlp
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

CHECKPOINT_KIND = "iql_learner"
STD_FLOOR = 1e-6
LOG_EVERY = 50
ACTION_KINDS = ("discrete", "continuous")

Tensor = torch.Tensor


@dataclass(frozen=True)
class IQLConfig:
    """Every hyper-parameter of IQL (defaults follow the DDS paper where it gives them)."""

    expectile: float = 0.7
    """tau of the expectile regression of V (0.5 is the mean; towards 1 the max over the data's actions)."""
    gamma: float = 0.99
    """Per-step discount (skill-level data carry gamma**steps as their own discount)."""
    tau: float = 0.005
    """EMA rate of the target Q network."""
    temperature: float = 3.0
    """Inverse temperature of the AWR weights exp(temperature * advantage)."""
    max_weight: float = 100.0
    """Cap of the AWR weights, so a few large advantages cannot dominate a batch."""
    hidden: int = 256
    """Width of every MLP."""
    layers: int = 2
    """Hidden layers of every MLP."""
    lr: float = 3e-4
    """Adam learning rate of Q, V and policy."""
    batch_size: int = 256
    """Transitions per step."""
    steps: int = 10_000
    """Training steps."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"IQLConfig.expectile must lie in (0, 1), got {self.expectile!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"IQLConfig.gamma must lie in [0, 1], got {self.gamma!r}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"IQLConfig.tau must lie in (0, 1], got {self.tau!r}")
        for name in ("temperature", "max_weight", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"IQLConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("hidden", "layers", "batch_size", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"IQLConfig.{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------------------------------------------
# Pure losses


@dataclass(frozen=True)
class ValueLoss:
    total: Tensor
    """() expectile loss of V against the target Q."""
    advantage: Tensor
    """(B,) Q_target(s, a) - V(s), detached."""


@dataclass(frozen=True)
class QLoss:
    total: Tensor
    """() mean over heads of the squared TD error."""
    target: Tensor
    """(B,) r + discount * (1 - done) * V(s'), detached."""


@dataclass(frozen=True)
class PolicyLoss:
    total: Tensor
    """() AWR loss."""
    weights: Tensor
    """(B,) the capped exp(temperature * advantage) weights used."""


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Asymmetric squared loss, elementwise: |expectile - 1[diff < 0]| * diff**2 for diff = target - prediction."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.pow(2)


def value_loss(value: Tensor, target_q: Tensor, expectile: float) -> ValueLoss:
    """(B,) V(s) and (B,) Q_target(s, a) -> expectile regression of V towards Q."""
    diff = target_q.detach() - value
    return ValueLoss(expectile_loss(diff, expectile).mean(), diff.detach())


def q_loss(q_heads: Tensor, returns: Tensor, discounts: Tensor, dones: Tensor, next_value: Tensor) -> QLoss:
    """(E, B) Q(s, a) of each of E heads; (B,) returns, discounts (gamma**steps), dones, V(s') -> TD loss."""
    target = (returns + discounts * (1.0 - dones) * next_value).detach()
    return QLoss((q_heads - target).pow(2).mean(dim=1).mean(), target)


def awr_weights(advantage: Tensor, temperature: float, max_weight: float) -> Tensor:
    """(B,) advantages -> (B,) exp(temperature * advantage) capped at max_weight, detached."""
    return torch.exp(temperature * advantage.detach()).clamp(max=max_weight)


def discrete_awr_loss(
    logits: Tensor, actions: Tensor, advantage: Tensor, temperature: float, max_weight: float
) -> PolicyLoss:
    """(B, K) policy logits, (B,) int dataset actions (skills), (B,) advantages -> -E[w log pi(a | s)]."""
    weights = awr_weights(advantage, temperature, max_weight)
    log_prob = -F.cross_entropy(logits, actions, reduction="none")
    return PolicyLoss(-(weights * log_prob).mean(), weights)


def deterministic_awr_loss(
    predicted: Tensor, actions: Tensor, advantage: Tensor, temperature: float, max_weight: float
) -> PolicyLoss:
    """(B, A) actor output, (B, A) dataset actions, (B,) advantages -> E[w ||pi(s) - a||^2]: AWR with a
    fixed-variance Gaussian actor, whose log-likelihood is this squared error up to constants."""
    weights = awr_weights(advantage, temperature, max_weight)
    return PolicyLoss((weights * (predicted - actions).pow(2).sum(dim=-1)).mean(), weights)


# --------------------------------------------------------------------------------------------------------------
# Networks and trainer


class _TwinQ(nn.Module):
    """Two Q heads. Discrete: (B, D) -> (2, B, K). Continuous: (B, D + A) -> (2, B, 1)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(mlp(in_dim, hidden, out_dim, layers, nn.ReLU) for _ in range(2))

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([head(x) for head in self.heads])


@dataclass(frozen=True)
class IQLLoss:
    total: Tensor
    value: ValueLoss
    q: QLoss
    policy: PolicyLoss


class IQLLearner(HubComponent):
    """Twin Q, V and an AWR policy over (observation, goal) inputs.

    ``action_kind='discrete'``: ``action_dim`` = K choices (the DDS skills, or the house's actions), a categorical
    policy.
    ``action_kind='continuous'``: ``action_dim`` = A, a deterministic tanh actor (the primitive-action baseline).
    """

    checkpoint_kind = CHECKPOINT_KIND
    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self, config: IQLConfig, obs_dim: int, goal_dim: int, action_dim: int,
        action_kind: Literal["discrete", "continuous"],
    ) -> None:  # fmt: skip
        super().__init__()
        if action_kind not in ACTION_KINDS:
            raise ValueError(f"action_kind must be one of {ACTION_KINDS}, got {action_kind!r}")
        if obs_dim < 1 or goal_dim < 0 or action_dim < 1:
            raise ValueError(
                f"need obs_dim >= 1, goal_dim >= 0, action_dim >= 1; got {obs_dim}, {goal_dim}, {action_dim}"
            )
        self.config, self.action_kind = config, action_kind
        self.obs_dim, self.goal_dim, self.action_dim = obs_dim, goal_dim, action_dim
        in_dim = obs_dim + goal_dim
        discrete = action_kind == "discrete"
        q_in, q_out = (in_dim, action_dim) if discrete else (in_dim + action_dim, 1)
        self.q = _TwinQ(q_in, config.hidden, q_out, config.layers)
        self.target_q = AveragedModel(self.q, multi_avg_fn=get_ema_multi_avg_fn(1.0 - config.tau))
        self.value = mlp(in_dim, config.hidden, 1, config.layers, nn.ReLU)
        self.policy = mlp(in_dim, config.hidden, action_dim, config.layers, nn.ReLU)
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))

    @property
    def device(self) -> torch.device:
        return self.input_mean.device

    def set_normalisation(self, observations: Tensor, goals: Tensor) -> None:
        x = torch.cat([observations, goals], dim=-1)
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0).clamp_min(STD_FLOOR) if x.shape[0] > 1 else torch.ones_like(x[0]))

    def inputs(self, observations: Tensor, goals: Tensor) -> Tensor:
        """(B, S), (B, G) -> (B, S + G) normalised network inputs."""
        return (torch.cat([observations, goals], dim=-1).to(self.input_mean) - self.input_mean) / self.input_std

    def _q_of(self, net: nn.Module, x: Tensor, actions: Tensor) -> Tensor:
        """(E, B) Q of the taken actions."""
        if self.action_kind == "discrete":
            q_all = net(x)  # (E, B, K)
            return q_all.gather(-1, actions.view(1, -1, 1).expand(q_all.shape[0], -1, 1)).squeeze(-1)
        return net(torch.cat([x, actions], dim=-1)).squeeze(-1)

    def compute_loss(self, batch: dict[str, Tensor]) -> IQLLoss:
        """One IQL step's losses on a batch with observations, goals, actions, returns, discounts, dones,
        next_observations, next_goals (shapes (B, ...))."""
        config = self.config
        x = self.inputs(batch["observations"], batch["goals"])
        with torch.no_grad():
            target_q = self._q_of(self.target_q, x, batch["actions"]).min(dim=0).values
            next_v = self.value(self.inputs(batch["next_observations"], batch["next_goals"])).squeeze(-1)
        v = value_loss(self.value(x).squeeze(-1), target_q, config.expectile)
        q_taken = self._q_of(self.q, x, batch["actions"])
        q = q_loss(q_taken, batch["returns"], batch["discounts"], batch["dones"], next_v)
        out = self.policy(x)
        if self.action_kind == "discrete":
            pi = discrete_awr_loss(out, batch["actions"], v.advantage, config.temperature, config.max_weight)
        else:
            pi = deterministic_awr_loss(
                torch.tanh(out), batch["actions"], v.advantage, config.temperature, config.max_weight
            )
        return IQLLoss(v.total + q.total + pi.total, v, q, pi)

    @torch.no_grad()
    def act(self, observations: Tensor, goals: Tensor) -> Tensor:
        """(B, S), (B, G) -> (B,) greedy skill indices (discrete) or (B, A) actions in [-1, 1] (continuous)."""
        out = self.policy(self.inputs(observations, goals))
        return out.argmax(dim=-1) if self.action_kind == "discrete" else torch.tanh(out)

    @torch.no_grad()
    def q_values(self, observations: Tensor, goals: Tensor) -> Tensor:
        """(B, K) min-of-twin target Q over all skills (discrete learners only)."""
        if self.action_kind != "discrete":
            raise ValueError("q_values lists every action: only discrete learners have it")
        return self.target_q(self.inputs(observations, goals)).min(dim=0).values

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "goal_dim": self.goal_dim, "action_dim": self.action_dim,
                "action_kind": self.action_kind}  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> IQLLearner:
        """In eval mode, on ``device`` (default: the CPU)."""
        config = config_from_dict(IQLConfig, values, folder / CONFIG_NAME)
        dims = int(extra["obs_dim"]), int(extra["goal_dim"]), int(extra["action_dim"])
        model = cls(config, *dims, extra["action_kind"])
        load_module_state(model, state, folder / WEIGHTS_NAME)
        return model.to(device or "cpu").eval()


@dataclass(frozen=True)
class IQLReport:
    """What one ``train_iql`` run measured (averages of the last logging interval)."""

    value_loss: float
    q_loss: float
    policy_loss: float
    mean_weight: float
    steps: int
    seconds: float


TRANSITION_KEYS = (
    "observations", "goals", "actions", "returns", "discounts", "dones", "next_observations", "next_goals",
)


def train_iql(
    data: dict[str, np.ndarray],
    config: IQLConfig,
    action_kind: Literal["discrete", "continuous"],
    num_actions: int | None = None,
    progress: bool = True,
    settings: LoopSettings | None = None,
    name: str = "iql",
) -> tuple[IQLLearner, IQLReport]:
    """Train IQL on transitions (the keys of TRANSITION_KEYS; discrete actions are (N,) ints in [0, num_actions)).

    Returns the learner in eval mode and a report.
    """
    missing = [k for k in TRANSITION_KEYS if k not in data]
    if missing:
        raise ValueError(f"IQL transitions lack {missing}")
    count = len(data["observations"])
    if count == 0:
        raise ValueError("IQL got no transitions")
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    tensors = {
        k: torch.as_tensor(np.asarray(data[k]), device=device,
                           dtype=torch.long if (k == "actions" and action_kind == "discrete") else torch.float32)
        for k in TRANSITION_KEYS
    }  # fmt: skip
    if action_kind == "discrete":
        if num_actions is None:
            raise ValueError("discrete IQL needs num_actions (the number of skills)")
        action_dim = num_actions
        if int(tensors["actions"].min()) < 0 or int(tensors["actions"].max()) >= num_actions:
            raise ValueError(f"discrete actions must lie in [0, {num_actions})")
    else:
        action_dim = tensors["actions"].shape[1]
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        obs_dim, goal_dim = tensors["observations"].shape[1], tensors["goals"].shape[1]
        learner = IQLLearner(config, obs_dim, goal_dim, action_dim, action_kind)
    learner.set_normalisation(tensors["observations"].cpu(), tensors["goals"].cpu())
    learner.to(device)
    params = [p for n, p in learner.named_parameters() if not n.startswith("target_q.")]
    optimiser = torch.optim.Adam(params, lr=config.lr)
    learner, optimiser = accelerator.prepare(learner, optimiser)
    model: IQLLearner = accelerator.unwrap_model(learner)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model.train()

    def step(_: int) -> dict[str, Tensor]:
        idx = torch.randint(count, (config.batch_size,), generator=generator, device=device)
        loss = model.compute_loss({k: v[idx] for k, v in tensors.items()})
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss.total)
        optimiser.step()
        model.target_q.update_parameters(model.q)
        return {"v": loss.value.total.detach(), "q": loss.q.total.detach(), "pi": loss.policy.total.detach(),
                "w": loss.policy.weights.mean().detach()}  # fmt: skip

    history = run_loop(name, accelerator, config.steps, step, {"rng": GeneratorState(generator)},
                       settings or LoopSettings(progress=progress), log_every=LOG_EVERY)  # fmt: skip
    model.eval()
    last = history[-1] if history else {"v": math.nan, "q": math.nan, "pi": math.nan, "w": math.nan}
    report = IQLReport(last["v"], last["q"], last["pi"], last["w"], config.steps, time.perf_counter() - started)
    return model, report


__all__ = [
    "IQLConfig", "IQLLearner", "IQLReport", "PolicyLoss", "QLoss", "ValueLoss", "awr_weights",
    "deterministic_awr_loss", "discrete_awr_loss", "expectile_loss", "q_loss", "train_iql", "value_loss",
]  # fmt: skip
