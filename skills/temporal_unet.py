"""The temporal U-Net of Diffuser (Janner et al., 2022): 1-D convolutions over time with FiLM conditioning on the
diffusion timestep and a condition vector, down- and up-sampled with skip connections. The MSTT generator's
denoiser over H-step windows and the Diffuser baseline's over whole routes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import Timesteps
from einops import rearrange
from torch import nn

Tensor = torch.Tensor


class UNetShape(Protocol):
    """The fields of a config that shape the U-Net."""

    hidden: int
    """Channels of the first level; level i has hidden * 2**i."""
    depth: int
    """Down/up-sampling levels (>= 0); the time axis is padded internally to a multiple of 2**depth."""
    kernel_size: int
    norm_groups: int
    cond_dim: int
    timestep_embed_dim: int


def check_unet_shape(config: UNetShape, check: Callable[[bool, str, Any, str], None]) -> None:
    """Validate the U-Net fields of ``config`` with its own ``check(ok, field, value, rule)``."""
    check(config.hidden >= 1, "hidden", config.hidden, "must be >= 1")
    check(config.depth >= 0, "depth", config.depth, "must be >= 0")
    check(config.kernel_size % 2 == 1, "kernel_size", config.kernel_size, "must be odd (and >= 1)")
    check(
        config.norm_groups >= 1 and config.hidden % config.norm_groups == 0,
        "norm_groups",
        config.norm_groups,
        f"must be >= 1 and divide hidden ({config.hidden})",
    )
    check(config.cond_dim >= 1, "cond_dim", config.cond_dim, "must be >= 1")
    check(
        config.timestep_embed_dim >= 2 and config.timestep_embed_dim % 2 == 0,
        "timestep_embed_dim",
        config.timestep_embed_dim,
        "must be even and >= 2",
    )


class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish())


class _ResBlock(nn.Module):
    """Two temporal convs with FiLM conditioning between them (as in diffusion_policy's ConditionalUnet1D)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv1 = _ConvBlock(c_in, c_out, kernel, groups)
        self.conv2 = _ConvBlock(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """(B, C_in, T), (B, D) -> (B, C_out, T)."""
        scale, bias = rearrange(self.film(cond), "b (two c) -> two b c 1", two=2)
        h = self.conv1(x) * (1 + scale) + bias
        return self.conv2(h) + self.skip(x)


class TemporalUNet(nn.Module):
    """1-D U-Net over time: (B, H, C) noisy trajectory, (B,) timesteps, (B, K) condition -> (B, H, C) noise."""

    def __init__(self, channels: int, cond_inputs: int, config: UNetShape) -> None:
        super().__init__()
        k, g, d = config.kernel_size, config.norm_groups, config.cond_dim
        widths = [config.hidden * 2**i for i in range(config.depth + 1)]
        self.multiple = 2**config.depth
        self.time_embed = Timesteps(config.timestep_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.cond_mlp = nn.Sequential(nn.Linear(config.timestep_embed_dim + cond_inputs, d), nn.Mish(), nn.Linear(d, d))
        self.stem = _ResBlock(channels, widths[0], d, k, g)
        self.down_blocks = nn.ModuleList(_ResBlock(w, w, d, k, g) for w in widths[:-1])
        self.downsample = nn.ModuleList(nn.Conv1d(w, w2, 3, stride=2, padding=1) for w, w2 in zip(widths, widths[1:]))
        self.mid = nn.ModuleList([_ResBlock(widths[-1], widths[-1], d, k, g) for _ in range(2)])
        self.upsample = nn.ModuleList(
            nn.ConvTranspose1d(w2, w, 4, stride=2, padding=1) for w, w2 in zip(widths, widths[1:])
        )
        self.up_blocks = nn.ModuleList(_ResBlock(2 * w, w, d, k, g) for w in widths[:-1])
        self.head = nn.Sequential(_ConvBlock(widths[0], widths[0], k, g), nn.Conv1d(widths[0], channels, 1))

    def forward(self, x: Tensor, timesteps: Tensor, cond: Tensor) -> Tensor:
        """(B, H, C) normalised noisy tau, (B,) long timesteps, (B, K) normalised s [+ g] -> (B, H, C) epsilon."""
        length = x.shape[1]
        padded = math.ceil(length / self.multiple) * self.multiple
        h = rearrange(x, "b h c -> b c h")
        if padded != length:
            h = F.pad(h, (0, padded - length), mode="replicate")
        c = self.cond_mlp(torch.cat([self.time_embed(timesteps).to(x.dtype), cond], dim=-1))
        h = self.stem(h, c)
        skips = []
        for block, down in zip(self.down_blocks, self.downsample, strict=True):
            h = block(h, c)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, c)
        for block, up in zip(reversed(self.up_blocks), reversed(self.upsample), strict=True):
            h = block(torch.cat([up(h), skips.pop()], dim=1), c)
        return rearrange(self.head(h)[..., :length], "b c h -> b h c")
