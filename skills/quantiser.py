"""The one place a vector quantiser is built, k-means initialised and audited for codebook usage.
Both the MSTT skill tokenizer and the DDS skill encoder quantise through these helpers, so the two agree.

Built on vector_quantize_pytorch.VectorQuantize: EMA codebook updates (no codebook gradient), k-means
initialisation and dead-code expiry. A unit-normal codebook init has been seen to collapse to one live code,
which is why k-means init is the default of every caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vector_quantize_pytorch import VectorQuantize


def build_quantizer(
    dim: int,
    codebook_size: int,
    ema_decay: float,
    kmeans_init: bool,
    kmeans_iters: int,
    threshold_ema_dead_code: float,
    beta: float,
    rotation_trick: bool,
) -> VectorQuantize:
    """An EMA-codebook quantiser of (B, dim) vectors; its loss is the commitment term already weighted by beta."""
    return VectorQuantize(
        dim=dim,
        codebook_size=codebook_size,
        decay=ema_decay,
        kmeans_init=kmeans_init,
        kmeans_iters=kmeans_iters,
        threshold_ema_dead_code=threshold_ema_dead_code,
        commitment_weight=beta,
        rotation_trick=rotation_trick,
        straight_through=False,
    )


def codebook_initialised(quantizer: VectorQuantize) -> bool:
    """Whether the codebook holds fitted codes. With k-means init the library would otherwise fit the codebook
    to the first batch it is shown, even in eval mode."""
    return bool(quantizer._codebook.initted)


@torch.no_grad()
def kmeans_initialise(quantizer: VectorQuantize, latents: torch.Tensor, batch_size: int) -> None:
    """Fit the codebook by k-means on (N, D) encoder outputs (more than one batch, so rare behaviours get codes).

    The library leaves the EMA counts on the scale of the sample (~N / L per code) while
    threshold_ema_dead_code is a count per batch; scaling counts and sums together by batch_size / N keeps the
    codes and lets dead codes expire from the first steps.
    """
    was_training = quantizer.training
    quantizer.eval()
    try:
        quantizer(latents)
    finally:
        quantizer.train(was_training)
    codebook = quantizer._codebook
    ratio = batch_size / latents.shape[0]
    codebook.cluster_size.mul_(ratio)
    codebook.embed_avg.mul_(ratio)


@dataclass(frozen=True)
class CodebookUsage:
    """How a set of code indices spreads over the codebook."""

    perplexity: float
    """exp(entropy) of the index distribution: the effective number of codes."""
    live_codes: int
    """Codes assigned at least once."""
    codebook_size: int

    @property
    def usage_fraction(self) -> float:
        return self.live_codes / self.codebook_size


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> CodebookUsage:
    """(N,) int code indices -> their perplexity and live-code count."""
    counts = torch.bincount(indices.flatten().long(), minlength=codebook_size).double()
    probs = counts / counts.sum().clamp_min(1)
    nonzero = probs[probs > 0]
    perplexity = float(torch.exp(-(nonzero * nonzero.log()).sum())) if nonzero.numel() else 0.0
    return CodebookUsage(perplexity, int((counts > 0).sum()), codebook_size)
