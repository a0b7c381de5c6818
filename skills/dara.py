"""DARA (Liu et al., "DARA: Dynamics-Aware Reward Augmentation in Offline Reinforcement Learning", ICLR 2022): the
learned part, two domain classifiers whose logits estimate how much more likely the target dynamics make a source
transition, and the reward augmentation r + eta * delta_r that any offline RL learner then trains on.

Two binary classifiers tell target (label 1) from source (label 0) transitions: q_sas on (s, a, s') and q_sa on
(s, a). A logit is log q(target | x) / q(source | x), so with balanced batches (half source, half target) Bayes' rule
gives the dynamics gap of a source transition as the difference of the two logits:

    delta_r(s, a, s') = logit_sas(s, a, s') - logit_sa(s, a) = log p_T(s' | s, a) - log p_S(s' | s, a),

and the augmented source reward r + eta * delta_r penalises source transitions the target dynamics would not produce.
As in DARC (Eysenbach et al., 2021), Gaussian noise on the (normalised) classifier inputs regularises the classifiers
during training; delta_r is clipped to [-gap_clip, gap_clip] so that a few confident logits cannot dominate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.layers import mlp
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

CHECKPOINT_KIND = "dara_classifiers"
STD_FLOOR = 1e-6
EVAL_BATCH = 65_536
"""Transitions per forward pass when classifying or augmenting whole datasets (no gradients kept)."""
TRANSITION_KEYS = ("observations", "actions", "next_observations")
SOURCE_LABEL, TARGET_LABEL = 0.0, 1.0

Tensor = torch.Tensor


@dataclass(frozen=True)
class DARAConfig:
    """Every hyper-parameter of DARA's domain classifiers and of its reward augmentation."""

    hidden: int = 256
    """Width of both classifier MLPs."""
    layers: int = 2
    """Hidden layers of both classifier MLPs."""
    lr: float = 3e-4
    """Adam learning rate of both classifiers."""
    batch_size: int = 256
    """Transitions per domain per step: each step sees batch_size source and batch_size target transitions."""
    steps: int = 5000
    """Training steps."""
    input_noise: float = 1.0
    """Std of the Gaussian noise added to the normalised classifier inputs during training (DARC's 1.0; 0: none)."""
    eta: float = 0.1
    """Weight of the reward augmentation r + eta * delta_r. 0.1 is the value of the DARA implementation in the ODRL
    benchmark (Lyu et al., 2024), which also takes the [-10, 10] clip below from the DARA paper."""
    gap_clip: float | None = 10.0
    """delta_r is clipped to [-gap_clip, gap_clip] (None: not clipped)."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "batch_size", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DARAConfig.{name} must be a positive integer, got {value!r}")
        if not _finite(self.lr) or not self.lr > 0:
            raise ValueError(f"DARAConfig.lr must be a finite number > 0, got {self.lr!r}")
        for name in ("input_noise", "eta"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ValueError(f"DARAConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.gap_clip is not None and (not _finite(self.gap_clip) or not self.gap_clip > 0):
            raise ValueError(f"DARAConfig.gap_clip must be a finite number > 0 or None, got {self.gap_clip!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ClassifierLoss:
    total: Tensor
    """() sas + sa."""
    sas: Tensor
    """() binary cross-entropy of q_sas(target | s, a, s') on a balanced batch."""
    sa: Tensor
    """() binary cross-entropy of q_sa(target | s, a) on the same batch."""


class DomainClassifiers(HubComponent):
    """q_sas(target | s, a, s') and q_sa(target | s, a): (B, S), (B, A), (B, S) -> (B,) logits each, and their
    difference delta_r, the estimated log p_T(s' | s, a) - log p_S(s' | s, a).

    Both share one normaliser of (s, a, s'), fitted on source and target data together; q_sa reads its first S + A
    entries."""

    checkpoint_kind = CHECKPOINT_KIND
    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, config: DARAConfig, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"need obs_dim >= 1 and act_dim >= 1; got {obs_dim}, {act_dim}")
        self.config, self.obs_dim, self.act_dim = config, obs_dim, act_dim
        self.sas = mlp(2 * obs_dim + act_dim, config.hidden, 1, config.layers, nn.ReLU)
        self.sa = mlp(obs_dim + act_dim, config.hidden, 1, config.layers, nn.ReLU)
        self.register_buffer("input_mean", torch.zeros(2 * obs_dim + act_dim))
        self.register_buffer("input_std", torch.ones(2 * obs_dim + act_dim))

    @property
    def device(self) -> torch.device:
        return self.input_mean.device

    def set_normalisation(self, observations: Tensor, actions: Tensor, next_observations: Tensor) -> None:
        """Fit the normaliser to (N, S), (N, A), (N, S) transitions (source and target together)."""
        x = torch.cat([observations, actions, next_observations], dim=-1).to(self.input_mean)
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0).clamp_min(STD_FLOOR) if x.shape[0] > 1 else torch.ones_like(x[0]))

    def inputs(self, observations: Tensor, actions: Tensor, next_observations: Tensor) -> Tensor:
        """(B, S), (B, A), (B, S) -> (B, 2S + A) normalised (s, a, s')."""
        x = torch.cat([observations, actions, next_observations], dim=-1).to(self.input_mean)
        return (x - self.input_mean) / self.input_std

    def _logits_of(self, sas_in: Tensor, sa_in: Tensor) -> tuple[Tensor, Tensor]:
        return self.sas(sas_in).squeeze(-1), self.sa(sa_in).squeeze(-1)

    def logits(self, observations: Tensor, actions: Tensor, next_observations: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S), (B, A), (B, S) -> (B,) logit of q_sas(target | s, a, s'), (B,) logit of q_sa(target | s, a)."""
        x = self.inputs(observations, actions, next_observations)
        return self._logits_of(x, x[:, : self.obs_dim + self.act_dim])

    @torch.no_grad()
    def reward_gap(self, observations: Tensor, actions: Tensor, next_observations: Tensor) -> Tensor:
        """(B, S), (B, A), (B, S) -> (B,) delta_r = logit_sas - logit_sa, clipped to [-gap_clip, gap_clip]."""
        return self.gap_of(*self.logits(observations, actions, next_observations))

    def gap_of(self, sas_logit: Tensor, sa_logit: Tensor) -> Tensor:
        """(B,) logits of q_sas and q_sa -> (B,) delta_r, clipped to [-gap_clip, gap_clip]."""
        gap = sas_logit - sa_logit
        clip = self.config.gap_clip
        return gap if clip is None else gap.clamp(-clip, clip)

    def compute_loss(
        self, source_batch: Mapping[str, Tensor], target_batch: Mapping[str, Tensor], generator: torch.Generator | None
    ) -> ClassifierLoss:
        """Cross-entropy of both classifiers on (B, ...) source and target batches (keys of TRANSITION_KEYS), with
        input_noise Gaussian noise (drawn from ``generator``) on the normalised inputs."""
        x = torch.cat([self.inputs(*(batch[k] for k in TRANSITION_KEYS)) for batch in (source_batch, target_batch)])
        sa_in = x[:, : self.obs_dim + self.act_dim]
        noise = self.config.input_noise
        if noise > 0:
            # Independent draws for the two classifiers, as in DARC.
            x = x + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            sa_in = sa_in + noise * torch.randn(sa_in.shape, generator=generator, device=x.device, dtype=x.dtype)
        count = len(source_batch["observations"])
        labels = torch.cat([x.new_full((count,), SOURCE_LABEL), x.new_full((len(x) - count,), TARGET_LABEL)])
        sas_logit, sa_logit = self._logits_of(x, sa_in)
        sas = F.binary_cross_entropy_with_logits(sas_logit, labels)
        sa = F.binary_cross_entropy_with_logits(sa_logit, labels)
        return ClassifierLoss(sas + sa, sas, sa)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> DomainClassifiers:
        """In eval mode, on ``device`` (default: the CPU)."""
        config = config_from_dict(DARAConfig, values, folder / CONFIG_NAME)
        model = cls(config, int(extra["obs_dim"]), int(extra["act_dim"]))
        load_module_state(model, state, folder / WEIGHTS_NAME)
        return model.to(device or "cpu").eval()


@dataclass(frozen=True)
class DARAReport:
    """What one ``train_domain_classifiers`` run measured. Losses: averages of the last logged step (with input
    noise); accuracies and gaps: of the trained classifiers, without noise, on all of the training data."""

    sas_loss: float
    sa_loss: float
    sas_accuracy_source: float
    """Fraction of source transitions q_sas calls source."""
    sas_accuracy_target: float
    """Fraction of target transitions q_sas calls target."""
    sa_accuracy_source: float
    sa_accuracy_target: float
    mean_gap_source: float
    """Mean clipped delta_r over the source transitions (negative: the target dynamics rarely produce them)."""
    mean_gap_target: float
    steps: int
    seconds: float


def _check_transitions(source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Both datasets hold the TRANSITION_KEYS as non-empty (N, S), (N, A), (N, S) arrays of shared S and A; returns
    the arrays as float32, keyed 'source observations' etc."""
    arrays: dict[str, np.ndarray] = {}
    for name, data in (("source", source), ("target", target)):
        missing = [k for k in TRANSITION_KEYS if k not in data]
        if missing:
            raise ValueError(f"DARA {name} transitions lack {missing} (need {list(TRANSITION_KEYS)})")
        for key in TRANSITION_KEYS:
            array = np.asarray(data[key], dtype=np.float32)
            if array.ndim != 2:
                raise ValueError(f"DARA {name} {key} must be 2-D (N, dim), got shape {array.shape}")
            arrays[f"{name} {key}"] = array
        obs, act, nxt = (arrays[f"{name} {k}"] for k in TRANSITION_KEYS)
        if len(obs) == 0:
            raise ValueError(f"DARA {name} transitions are empty: observations have shape {obs.shape}")
        if not len(obs) == len(act) == len(nxt):
            raise ValueError(
                f"DARA {name} transitions disagree in length: observations {obs.shape}, actions {act.shape}, "
                f"next_observations {nxt.shape}"
            )
        if nxt.shape[1] != obs.shape[1]:
            raise ValueError(
                f"DARA {name} next_observations have shape {nxt.shape} but observations {obs.shape}: "
                "both need the same observation size"
            )
    for key in ("observations", "actions"):
        src, tgt = arrays[f"source {key}"].shape, arrays[f"target {key}"].shape
        if src[1] != tgt[1]:
            raise ValueError(
                f"DARA source {key} have shape {src} but target {key} have shape {tgt}: "
                "both datasets must share observation and action sizes"
            )
    return arrays


@torch.no_grad()
def _logits_in_batches(
    model: DomainClassifiers, transitions: Mapping[str, Tensor], batch: int
) -> tuple[Tensor, Tensor]:
    """Transitions (the keys of TRANSITION_KEYS, N of each) -> (N,) sas and (N,) sa logits, ``batch`` per pass."""
    parts = [
        model.logits(*(transitions[k][i : i + batch] for k in TRANSITION_KEYS))
        for i in range(0, len(transitions["observations"]), batch)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def train_domain_classifiers(
    source: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    config: DARAConfig,
    progress: bool = True,
    settings: LoopSettings | None = None,
    name: str = "dara",
) -> tuple[DomainClassifiers, DARAReport]:
    """Train q_sas and q_sa to tell ``target`` from ``source`` transitions, each a dict of (N, S) observations,
    (N, A) actions and (N, S) next_observations; every step draws batch_size transitions from each.

    Returns the classifiers in eval mode and a report.
    """
    arrays = _check_transitions(source, target)
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    data = {
        domain: {k: torch.as_tensor(arrays[f"{domain} {k}"], device=device) for k in TRANSITION_KEYS}
        for domain in ("source", "target")
    }
    counts = {domain: len(tensors["observations"]) for domain, tensors in data.items()}
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DomainClassifiers(config, arrays["source observations"].shape[1], arrays["source actions"].shape[1])
    model.set_normalisation(*(torch.cat([torch.as_tensor(arrays[f"{d} {k}"]) for d in data]) for k in TRANSITION_KEYS))
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    prepared, optimiser = accelerator.prepare(model, optimiser)
    model = accelerator.unwrap_model(prepared)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model.train()

    def draw(domain: str) -> dict[str, Tensor]:
        idx = torch.randint(counts[domain], (config.batch_size,), generator=generator, device=device)
        return {k: v[idx] for k, v in data[domain].items()}

    def step(_: int) -> dict[str, Tensor]:
        loss = model.compute_loss(draw("source"), draw("target"), generator)
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss.total)
        optimiser.step()
        return {"sas": loss.sas.detach(), "sa": loss.sa.detach()}

    history = run_loop(name, accelerator, config.steps, step, {"rng": GeneratorState(generator)},
                       settings or LoopSettings(progress=progress))  # fmt: skip
    model.eval()
    last = history[-1] if history else {"sas": math.nan, "sa": math.nan}
    sas_source, sa_source = _logits_in_batches(model, data["source"], EVAL_BATCH)
    sas_target, sa_target = _logits_in_batches(model, data["target"], EVAL_BATCH)
    report = DARAReport(
        sas_loss=last["sas"],
        sa_loss=last["sa"],
        sas_accuracy_source=float((sas_source < 0).float().mean()),
        sas_accuracy_target=float((sas_target > 0).float().mean()),
        sa_accuracy_source=float((sa_source < 0).float().mean()),
        sa_accuracy_target=float((sa_target > 0).float().mean()),
        mean_gap_source=float(model.gap_of(sas_source, sa_source).mean()),
        mean_gap_target=float(model.gap_of(sas_target, sa_target).mean()),
        steps=config.steps,
        seconds=time.perf_counter() - started,
    )
    return model, report


@torch.no_grad()
def augment_rewards(
    classifiers: DomainClassifiers,
    observations: np.ndarray,
    actions: np.ndarray,
    next_observations: np.ndarray,
    rewards: np.ndarray,
    eta: float | None = None,
    batch: int = EVAL_BATCH,
) -> np.ndarray:
    """(N, S), (N, A), (N, S) source transitions and their (N,) rewards -> (N,) r + eta * delta_r (eta: default the
    classifiers' config.eta), ``batch`` transitions per forward pass. Floating rewards keep their dtype."""
    eta = classifiers.config.eta if eta is None else eta
    if not _finite(eta) or eta < 0:
        raise ValueError(f"augment_rewards: eta must be a finite number >= 0, got {eta!r}")
    if batch < 1:
        raise ValueError(f"augment_rewards: batch must be >= 1, got {batch!r}")
    rewards = np.asarray(rewards)
    if rewards.ndim != 1 or not len(rewards) == len(observations) == len(actions) == len(next_observations):
        raise ValueError(
            f"augment_rewards needs (N,) rewards for N transitions; got rewards {rewards.shape}, observations "
            f"{np.shape(observations)}, actions {np.shape(actions)}, next_observations {np.shape(next_observations)}"
        )
    device = classifiers.device
    gaps = []
    for i in range(0, len(rewards), batch):
        chunk = (
            torch.as_tensor(np.asarray(a[i : i + batch]), dtype=torch.float32, device=device)
            for a in (observations, actions, next_observations)
        )
        gaps.append(classifiers.reward_gap(*chunk).cpu().numpy())
    dtype = np.result_type(rewards.dtype, np.float32)
    gap = np.concatenate(gaps).astype(dtype) if gaps else np.zeros(0, dtype)
    return rewards.astype(dtype) + dtype.type(eta) * gap


__all__ = [
    "ClassifierLoss", "DARAConfig", "DARAReport", "DomainClassifiers", "augment_rewards", "train_domain_classifiers",
]  # fmt: skip
