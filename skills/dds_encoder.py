"""The DDS skill encoder: a transformer over an H-step state-action window, quantised to one of K discrete
skills by a VQ codebook (Discrete Diffusion Skills, arXiv 2503.20176, section 4.1).

Window (B, H, S + A) -> per-step linear embedding + learned position embedding, a learned summary token in
front -> transformer encoder -> summary token -> linear to code_dim -> vector quantiser (built by
skills.quantiser, exactly as the MSTT tokenizer's). The window normalisation is kept as buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import repeat
from torch import nn

from mstt.skills.quantiser import CodebookUsage, build_quantizer, codebook_initialised, codebook_usage

STD_FLOOR = 1e-6
"""Smallest std a window channel is divided by (constant channels would blow up float noise)."""
ENCODE_CHUNK = 16_384
"""Windows per forward pass when encoding a whole dataset, bounding peak memory."""


@dataclass(frozen=True)
class SkillEncoderConfig:
    """Every hyper-parameter of the skill encoder and its codebook (defaults: the paper's)."""

    horizon: int = 10
    """H, steps per skill window."""
    codebook_size: int = 16
    """K, number of discrete skills."""
    code_dim: int = 128
    """Dimension of each codebook vector (and of the skill embedding the decoder reads)."""
    width: int = 256
    """Transformer model width."""
    layers: int = 4
    """Transformer encoder layers."""
    heads: int = 8
    """Attention heads; must divide width."""
    dropout: float = 0.0
    """Transformer dropout."""
    beta: float = 0.25
    """Commitment weight of the VQ loss."""
    ema_decay: float = 0.99
    """Decay of the EMA codebook updates."""
    kmeans_init: bool = True
    """Initialise the codebook by k-means on encoder outputs; a unit-normal init collapsed to one live code."""
    kmeans_iters: int = 10
    """Lloyd iterations of the k-means initialisation."""
    kmeans_init_samples: int = 20_000
    """Windows the k-means initialisation sees."""
    threshold_ema_dead_code: float = 2.0
    """Codes whose EMA count per batch falls below this are re-seeded from the batch (below batch / K)."""
    rotation_trick: bool = True
    """Gradient estimator through the quantiser: rotation trick or straight-through."""

    def __post_init__(self) -> None:
        for name in ("horizon", "codebook_size", "code_dim", "width", "layers", "heads", "kmeans_iters",
                     "kmeans_init_samples"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SkillEncoderConfig.{name} must be a positive integer, got {value!r}")
        if self.codebook_size < 2:
            raise ValueError(f"SkillEncoderConfig.codebook_size must be >= 2, got {self.codebook_size}")
        if self.width % self.heads:
            raise ValueError(f"SkillEncoderConfig.heads={self.heads} must divide width={self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SkillEncoderConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        for name in ("beta", "threshold_ema_dead_code"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"SkillEncoderConfig.{name} must be a finite number >= 0, got {value!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"SkillEncoderConfig.ema_decay must lie in (0, 1), got {self.ema_decay!r}")


@dataclass(frozen=True)
class EncodedSkills:
    """One quantisation of a batch of windows."""

    indices: torch.Tensor
    """(B,) int64 skill index."""
    codes: torch.Tensor
    """(B, code_dim) quantised skill embedding (gradients reach the encoder through the quantiser)."""
    commitment: torch.Tensor
    """() commitment loss, already weighted by beta."""


class SkillEncoder(nn.Module):
    """(B, H, S + A) state-action windows -> discrete skills."""

    window_mean: torch.Tensor
    window_std: torch.Tensor

    def __init__(self, config: SkillEncoderConfig, state_dim: int, action_dim: int) -> None:
        super().__init__()
        if state_dim < 1 or action_dim < 1:
            raise ValueError(f"state_dim and action_dim must be >= 1, got {state_dim}, {action_dim}")
        self.config, self.state_dim, self.action_dim = config, state_dim, action_dim
        channels = state_dim + action_dim
        self.embed = nn.Linear(channels, config.width)
        self.position = nn.Parameter(torch.zeros(config.horizon + 1, config.width))
        self.summary = nn.Parameter(torch.zeros(config.width))
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.summary, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, 4 * config.width, config.dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(config.width), nn.Linear(config.width, config.code_dim))
        self.quantizer = build_quantizer(
            config.code_dim, config.codebook_size, config.ema_decay, config.kmeans_init, config.kmeans_iters,
            config.threshold_ema_dead_code, config.beta, config.rotation_trick,
        )  # fmt: skip
        self.register_buffer("window_mean", torch.zeros(channels))
        self.register_buffer("window_std", torch.ones(channels))

    @property
    def device(self) -> torch.device:
        return self.window_mean.device

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def initialised(self) -> bool:
        return codebook_initialised(self.quantizer)

    def set_normalisation(self, windows: torch.Tensor) -> None:
        """Per-channel mean and std of (N, H, S + A) windows."""
        flat = windows.reshape(-1, windows.shape[-1])
        self.window_mean.copy_(flat.mean(0))
        self.window_std.copy_(flat.std(0).clamp_min(STD_FLOOR) if flat.shape[0] > 1 else torch.ones_like(flat[0]))

    def latent(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, H, S + A) raw windows -> (B, code_dim) continuous encoder output before quantisation."""
        if windows.ndim != 3 or windows.shape[1:] != (self.config.horizon, self.state_dim + self.action_dim):
            raise ValueError(
                f"windows must be (B, {self.config.horizon}, {self.state_dim + self.action_dim}), "
                f"got {tuple(windows.shape)}"
            )
        x = self.embed((windows.to(self.window_mean) - self.window_mean) / self.window_std)
        summary = repeat(self.summary, "d -> b 1 d", b=x.shape[0])
        h = self.transformer(torch.cat([summary, x], dim=1) + self.position)
        return self.head(h[:, 0])

    def forward(self, windows: torch.Tensor) -> EncodedSkills:
        """Quantise (B, H, S + A) windows; in train mode the codebook's EMA and dead-code expiry update."""
        codes, indices, commitment = self.quantizer(self.latent(windows))
        return EncodedSkills(indices, codes, commitment)

    def code_vectors(self, indices: torch.Tensor) -> torch.Tensor:
        """(B,) skill indices -> (B, code_dim) codebook vectors."""
        return self.quantizer.codebook[indices]

    @torch.no_grad()
    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, H, S + A) windows -> (N,) skill indices, chunked, never updating the codebook."""
        if not self.initialised:
            raise RuntimeError("the skill codebook is not initialised: train the encoder or load a checkpoint first")
        was_training = self.training
        self.eval()
        try:
            out = [self(chunk.to(self.device)).indices for chunk in windows.split(ENCODE_CHUNK)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=self.device)

    def usage(self, windows: torch.Tensor) -> CodebookUsage:
        """Perplexity and live codes of the skills assigned to (N, H, S + A) windows."""
        return codebook_usage(self.encode(windows), self.codebook_size)


__all__ = ["EncodedSkills", "SkillEncoder", "SkillEncoderConfig"]
