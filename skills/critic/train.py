"""Offline training of the masked critic: the skill prior first (the Bellman filter reads it), then TD steps on
masked Bellman targets with clipped double Q, through the one resumable accelerate loop of skills/training.py.

Clipped double Q: ``n_critics`` online nets; the target is the min over their soft-updated target copies, and
``q_values`` returns that min too, the conservative choice at planning time.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from mstt.skills.critic.bellman import GOAL_REWARD, goal_reached, masked_bellman_target
from mstt.skills.critic.configuration import CriticConfig
from mstt.skills.critic.model import MaskedCritic
from mstt.skills.critic.sampling import BatchSampler
from mstt.skills.critic.transitions import SkillTransitions
from mstt.skills.masks import pad_token_sequences
from mstt.skills.prior import fit_skill_prior
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

Tensor = torch.Tensor


@dataclass(frozen=True)
class CriticReport:
    """What one ``train_critic`` run measured."""

    td_losses: tuple[float, ...]
    """Mean TD loss over critics, read every ``log_every`` steps."""
    final_td_loss: float
    """Mean TD loss over the last logging interval (nan when steps = 0)."""
    prior_loss: float
    """Cross-entropy of the skill prior on the last prior batch (nan when prior_steps = 0)."""
    prior_accuracy: float
    """Top-1 accuracy of the prior on the whole data (after training)."""
    mean_q: float
    """Mean Q of the taken skills over the last logging interval."""
    masked_taken_fraction: float
    """Share of training samples whose taken skill was masked (sink targets)."""
    empty_bootstrap_fraction: float
    """Share of unmasked, not-done samples with no feasible in-prior next skill (bootstrap = r_term)."""
    bound_lifted_fraction: float
    """Share of training samples whose target the data-return lower bound raised above the Bellman target."""
    steps: int
    """TD steps run."""
    seconds: float
    """Wall time of the whole run (prior and TD)."""



class _Totals:
    """Report counters kept on the device (no sync per step) and checkpointed with the loop."""

    def __init__(self, device: torch.device) -> None:
        self.values = {k: torch.zeros((), device=device) for k in ("masked", "live", "empty", "lifted")}

    def add(self, **counts: Tensor) -> None:
        for key, value in counts.items():
            self.values[key] += value

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.values)

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        for key, value in state.items():
            self.values[key].copy_(value)


def train_critic(
    transitions: SkillTransitions,
    config: CriticConfig,
    segment_tokens: Sequence[Tensor | np.ndarray] | None = None,
    progress: bool = True,
    settings: LoopSettings | None = None,
) -> tuple[MaskedCritic, CriticReport]:
    """Train the masked-Bellman critic and its skill prior offline.

    Args:
        transitions: from ``build_skill_transitions``.
        config: hyper-parameters.
        segment_tokens: per-episode token sequences in time order from which structured (non-anchored) masks are
            cut, e.g. tokens of a denser windowing or of extra data; default the transitions' own episodes.
            Anchored segments always come from the transitions' episodes.
        progress: show tqdm bars (the TD one shows the TD loss).
        settings: checkpoint folder and interval of the resumable TD loop (default: none).

    Returns:
        (critic in eval mode on the config's device, report).
    """
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    data = transitions.to(device)
    if not config.goal_conditioned and config.fixed_goal is not None and len(config.fixed_goal) != data.pos_dim:
        raise ValueError(
            f"CriticConfig.fixed_goal has {len(config.fixed_goal)} numbers but positions have {data.pos_dim}"
        )
    if config.return_bound and data.horizon % data.stride != 0:
        raise ValueError(
            f"CriticConfig.return_bound needs windows whose stride ({data.stride}) divides the horizon "
            f"({data.horizon}): the bound follows the data's back-to-back skills; set return_bound: false"
        )
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        critic = MaskedCritic(config, data.state_dim, data.pos_dim, data.num_skills, data.horizon)
    critic = critic.to(device)
    valid_steps = torch.cat(
        [data.achieved[e, : int(n)] for e, n in enumerate(data.episode_length.tolist())]
    )  # (sum T_e, P)
    critic.set_normalisation(data.s.mean(0), data.s.std(0), valid_steps.mean(0), valid_steps.std(0))
    gen = torch.Generator(device=device).manual_seed(config.seed)

    prior_loss, prior_accuracy = fit_skill_prior(
        critic.prior_logits, critic.prior_net.parameters(), data.s, data.z, steps=config.prior_steps,
        batch_size=config.batch_size, lr=config.prior_lr, log_every=config.log_every, generator=gen, progress=progress,
    )  # fmt: skip
    critic.prior_net.requires_grad_(False)

    if segment_tokens is None:
        segment_table, segment_lengths = data.episode_tokens, data.episode_windows
    else:
        try:
            table = pad_token_sequences(segment_tokens, data.num_skills)
        except ValueError as error:
            raise ValueError(f"segment_tokens: {error}") from None
        segment_table, segment_lengths = (t.to(device) for t in table)
    sampler = BatchSampler(data, config, segment_table, segment_lengths, gen)

    target_nets = copy.deepcopy(critic.q_nets).requires_grad_(False)
    # foreach: the nets are small, so per-parameter optimiser and target-update kernels would dominate a step
    optimiser = torch.optim.AdamW(
        critic.q_nets.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    critic, optimiser = accelerator.prepare(critic, optimiser)
    model = accelerator.unwrap_model(critic)
    online = list(model.q_nets.parameters())
    target = list(target_nets.parameters())
    soft_update = get_ema_multi_avg_fn(decay=1.0 - config.tau)
    discount = model.discount
    totals = _Totals(device)
    critic.train()

    def step(_: int) -> dict[str, Tensor]:
        idx = sampler.indices(config.batch_size)
        z = data.z[idx]
        masks, goals = sampler.masks_and_goals(idx)
        done = goal_reached(data.positions[idx], goals, config.goal_radius)
        reward = done.to(torch.float32) * GOAL_REWARD
        taken_unmasked = masks.gather(1, z[:, None]).squeeze(1)
        with torch.no_grad():
            s_next = data.s_next[idx]
            next_q = model.q_ensemble(s_next, masks, goals, nets=target_nets).amin(dim=0)
            allowed = masks & model.skill_support(s_next)
            y = masked_bellman_target(
                reward, done, taken_unmasked, next_q, allowed, discount, config.target_temperature
            )
            if config.return_bound:
                bound, bounded = sampler.return_bound(idx, goals, masks)
                lifted = bounded & (bound > y)
                y = torch.where(lifted, bound, y)
            else:
                lifted = torch.zeros_like(done)
        q_taken = model.q_ensemble(data.s[idx], masks, goals).gather(
            2, z[None, :, None].expand(config.n_critics, -1, 1)
        ).squeeze(2)  # (n_critics, B)
        loss = F.mse_loss(q_taken, y[None].expand_as(q_taken))
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        nn.utils.clip_grad_norm_(online, config.grad_clip_norm, foreach=True)
        optimiser.step()
        with torch.no_grad():
            soft_update(target, online, None)
            live = taken_unmasked & ~done
            totals.add(
                masked=(~taken_unmasked).sum(),
                live=live.sum(),
                empty=(live & ~allowed.any(dim=1)).sum(),
                lifted=lifted.sum(),
            )
        return {"td": loss.detach(), "q": q_taken.detach().mean()}

    history = run_loop(
        "masked critic", accelerator, config.steps, step,
        {"target_nets": target_nets, "rng": GeneratorState(gen), "totals": totals},
        settings or LoopSettings(progress=progress), log_every=config.log_every,
    )  # fmt: skip
    td_losses = [h["td"] for h in history]
    final_td = td_losses[-1] if td_losses else math.nan
    mean_q = history[-1]["q"] if history else math.nan
    critic = model
    critic.eval()
    samples = max(1, config.steps * config.batch_size)
    report = CriticReport(
        td_losses=tuple(td_losses),
        final_td_loss=final_td,
        prior_loss=prior_loss,
        prior_accuracy=prior_accuracy,
        mean_q=mean_q,
        masked_taken_fraction=float(totals.values["masked"]) / samples,
        empty_bootstrap_fraction=float(totals.values["empty"]) / max(1.0, float(totals.values["live"])),
        bound_lifted_fraction=float(totals.values["lifted"]) / samples,
        steps=config.steps,
        seconds=time.perf_counter() - started,
    )
    return critic, report
