"""The skill prior p(z | s): which skills the source data takes at a state, fitted by cross-entropy on (s, z).
The critic's Bellman max and the planner's ``prefer_support`` both keep only the skills in its support."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

PRIOR_THRESHOLD_MODES = ("absolute", "relative")
DEFAULT_PRIOR_THRESHOLD = 0.01
ACCURACY_CHUNK = 4096
"""States per forward pass when the fitted prior's accuracy is measured on the whole data."""

Tensor = torch.Tensor


def prior_support(probs: Tensor, threshold: float, mode: str = "absolute") -> Tensor:
    """(B, L) prior probabilities -> (B, L) bool: skills the data plausibly takes at that state.

    'absolute': p >= threshold. 'relative': p >= threshold * max_z p, which keeps the most likely skill even
    when a large codebook spreads every probability below an absolute threshold.
    """
    if mode == "absolute":
        return probs >= threshold
    if mode == "relative":
        return probs >= threshold * probs.amax(dim=-1, keepdim=True)
    raise ValueError(f"prior threshold mode must be one of {PRIOR_THRESHOLD_MODES}, got {mode!r}")


def fit_skill_prior(
    logits: Callable[[Tensor], Tensor],
    parameters: Iterable[nn.Parameter],
    states: Tensor,
    skills: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    log_every: int,
    generator: torch.Generator,
    progress: bool,
) -> tuple[float, float]:
    """Fit p(z | s) by cross-entropy on the data's (s, z) with Adam.

    Args:
        logits: (B, S) states -> (B, L) logits of the prior being fitted.
        parameters: what the optimiser updates.
        states: (N, S) observations; skills: (N,) long tokens taken there.
        steps, batch_size, lr, log_every: the run (one batch of ``batch_size`` indices drawn per step).
        generator: draws the batches.
        progress: show a tqdm bar.

    Returns:
        (cross-entropy of the last batch, nan when steps = 0; top-1 accuracy on all N states).
    """
    optimiser = torch.optim.Adam(parameters, lr=lr, foreach=True)
    loss = torch.tensor(math.nan)
    bar = tqdm(range(steps), desc="skill prior", disable=not progress, leave=False)
    for step in bar:
        idx = torch.randint(states.shape[0], (batch_size,), generator=generator, device=states.device)
        loss = F.cross_entropy(logits(states[idx]), skills[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if (step + 1) % log_every == 0:
            bar.set_postfix(ce=f"{loss.item():.4f}")
    with torch.no_grad():
        correct = sum(
            int((logits(states[i : i + ACCURACY_CHUNK]).argmax(-1) == skills[i : i + ACCURACY_CHUNK]).sum())
            for i in range(0, states.shape[0], ACCURACY_CHUNK)
        )
    return float(loss.detach()), correct / states.shape[0]
