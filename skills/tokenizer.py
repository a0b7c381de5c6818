"""The skill tokenizer: a VQ-VAE that maps each H-step position window to one of L discrete skill tokens.
Trained once on the offline data; at deployment it encodes a demo's windows so the skill mask can be read off.

Architecture: window features (see ``skills.windows``) -> isotropic normalisation (statistics saved with the
model) -> MLP encoder -> ``vector_quantize_pytorch.VectorQuantize`` (EMA codebook, k-means init, dead-code
expiry) -> MLP decoder reconstructing the normalised features.
Loss: ``||tau - decoder(z_q)||^2 + beta ||z_e - sg(z_q)||^2``; the codebook term of the original VQ-VAE is
replaced by the library's EMA codebook updates.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mstt.skills.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    HubComponent,
    config_from_dict,
    load_module_state,
)
from mstt.skills.layers import mlp
from mstt.skills.quantiser import build_quantizer
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop
from mstt.skills.validation import resolve_device
from mstt.skills.windows import DEFAULT_DISPLACEMENT_SCALE, WindowFeatures, window_features

TOKENIZER_KIND = "skill_tokenizer"
# A codebook using fewer than this share of its codes on its own training data has collapsed: the tokens
# no longer separate routes and every mask built from them is meaningless.
COLLAPSE_USAGE_FRACTION = 0.5
# Features whose pooled std is below this are constant; dividing by it would blow up float noise.
MIN_FEATURE_STD = 1e-6
# Windows per forward pass when encoding whole datasets, bounding peak memory.
ENCODE_CHUNK = 65_536
# Training steps between progress-bar updates; each update synchronises with the device.
LOG_EVERY = 50
# The reported final loss is averaged over this many last steps, smoothing batch noise.
FINAL_LOSS_WINDOW = 100
RECON_QUANTILES = (0.5, 0.99)


@dataclass(frozen=True)
class TokenizerConfig:
    """Every hyper-parameter of the skill tokenizer and its training run."""

    horizon: int = 16
    """H, steps per window. 16 separated PointMaze routes (purity >= 0.997)."""
    codebook_size: int = 240
    """L, number of skill tokens (paper: 240)."""
    code_dim: int = 32
    """Dimension of the encoder output and of each codebook vector."""
    hidden: int = 256
    """Width of the hidden layers of encoder and decoder."""
    layers: int = 2
    """Hidden layers in each of encoder and decoder."""
    beta: float = 0.25
    """Commitment weight: pulls encoder outputs towards their code."""
    lr: float = 1e-3
    """Adam learning rate for encoder and decoder (the codebook follows by EMA, not by gradient)."""
    batch_size: int = 1024
    """Windows per training step."""
    steps: int = 10_000
    """Training steps."""
    ema_decay: float = 0.99
    """Decay of the EMA codebook updates (closer to 1: slower, smoother codes)."""
    kmeans_init: bool = True
    """Initialise the codebook by k-means on encoder outputs, so no code starts far from the data."""
    kmeans_iters: int = 10
    """Lloyd iterations of the k-means initialisation."""
    kmeans_init_samples: int = 20_000
    """Windows the k-means initialisation sees (more than one batch, so rare routes get codes)."""
    threshold_ema_dead_code: float = 1.0
    """A code whose EMA count of windows per batch falls below this is re-seeded from the batch. Must stay
    below batch_size / codebook_size (the average count) or codes churn forever."""
    rotation_trick: bool = True
    """Gradient estimator through the quantiser: rotation trick (library default) or plain straight-through."""
    grad_clip: float = 1.0
    """Maximum global gradient norm per step."""
    displacement_scale: float = DEFAULT_DISPLACEMENT_SCALE
    """Weight of displacements against absolute start position in the window features (see skills.windows)."""
    seed: int = 0
    """Seed for initialisation, k-means and batch sampling."""
    device: str = "auto"
    """Torch device for training; "auto" picks CUDA when available."""
    allow_collapse: bool = False
    """Return a collapsed codebook with a warning instead of raising CodebookCollapseError (for debugging)."""

    def __post_init__(self) -> None:
        positive_ints = ("horizon", "codebook_size", "code_dim", "hidden", "layers", "batch_size", "steps",
                         "kmeans_iters", "kmeans_init_samples")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenizerConfig.{name} must be a positive integer, got {value!r}")
        if self.horizon < 2:
            raise ValueError(f"TokenizerConfig.horizon must be >= 2 (a window needs motion), got {self.horizon}")
        if self.codebook_size < 2:
            raise ValueError(f"TokenizerConfig.codebook_size must be >= 2, got {self.codebook_size}")
        for name in ("beta", "threshold_ema_dead_code"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"TokenizerConfig.{name} must be a finite number >= 0, got {value!r}")
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"TokenizerConfig.{name} must be a finite number > 0, got {value!r}")
        if not (0.0 < self.ema_decay < 1.0):
            raise ValueError(f"TokenizerConfig.ema_decay must lie in (0, 1), got {self.ema_decay!r}")
        average_count = self.batch_size / self.codebook_size
        if self.threshold_ema_dead_code >= average_count:
            raise ValueError(
                f"TokenizerConfig.threshold_ema_dead_code={self.threshold_ema_dead_code} must be below "
                f"batch_size / codebook_size = {average_count:.3g} (a code's average count per batch), "
                "otherwise most codes are re-seeded every step; lower it or raise batch_size"
            )
        try:
            WindowFeatures(self.displacement_scale)
        except ValueError as error:
            raise ValueError(f"TokenizerConfig.displacement_scale: {error}") from error
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as error:
                raise ValueError(
                    f"TokenizerConfig.device must be 'auto' or a torch device, got {self.device!r}"
                ) from error

    @property
    def features(self) -> WindowFeatures:
        """The window-feature map this tokenizer reads."""
        return WindowFeatures(self.displacement_scale)

    def resolve_device(self) -> torch.device:
        """The torch device "auto" stands for on this machine."""
        return resolve_device(self.device)


@dataclass(frozen=True)
class TokenizerLoss:
    """One training step's loss terms; ``total`` is what is minimised."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    commitment: torch.Tensor
    indices: torch.Tensor
    """(B,) token of each window in the batch."""


@dataclass(frozen=True)
class TokenizerReport:
    """How training went, measured on the training windows after the last step."""

    final_loss: float
    """Total loss averaged over the last steps."""
    perplexity: float
    """exp(entropy) of the token distribution on the training windows: the effective number of codes."""
    live_codes: int
    """Codes assigned to at least one training window."""
    codebook_size: int
    usage_fraction: float
    """live_codes / codebook_size."""
    recon_error_p50: float
    """Median per-window reconstruction error (mean squared error on normalised features)."""
    recon_error_p99: float
    """99th percentile of the same; demo windows above it are treated as out of distribution."""
    collapsed: bool = dataclasses.field(init=False)
    """usage_fraction < COLLAPSE_USAGE_FRACTION."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "collapsed", self.usage_fraction < COLLAPSE_USAGE_FRACTION)

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"loss {self.final_loss:.4g}, {self.live_codes}/{self.codebook_size} codes live "
            f"({self.usage_fraction:.0%}), perplexity {self.perplexity:.1f}, "
            f"recon p50 {self.recon_error_p50:.3g} p99 {self.recon_error_p99:.3g}"
            + (" -- COLLAPSED" if self.collapsed else "")
        )


class CodebookCollapseError(RuntimeError):
    """Training ended with most codes unused; ``report`` and ``tokenizer`` are attached for inspection."""

    def __init__(self, message: str, report: TokenizerReport, tokenizer: SkillTokenizer) -> None:
        super().__init__(message)
        self.report = report
        self.tokenizer = tokenizer


class CodebookCollapseWarning(RuntimeWarning):
    """Raised as a warning instead of CodebookCollapseError when TokenizerConfig.allow_collapse is set."""


class SkillTokenizer(HubComponent):
    """VQ-VAE over position windows. Build untrained with ``SkillTokenizer(config, pos_dim)``; train with
    ``train_tokenizer``; reload with ``SkillTokenizer.from_pretrained``."""

    checkpoint_kind = TOKENIZER_KIND

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    recon_error_quantiles: torch.Tensor

    def __init__(self, config: TokenizerConfig, pos_dim: int) -> None:
        super().__init__()
        if isinstance(pos_dim, bool) or not isinstance(pos_dim, int) or pos_dim < 1:
            raise ValueError(f"pos_dim must be a positive integer, got {pos_dim!r}")
        self.config = config
        self._pos_dim = pos_dim
        feature_dim = WindowFeatures.feature_dim(config.horizon, pos_dim)
        self.encoder = mlp(feature_dim, config.hidden, config.code_dim, config.layers, nn.SiLU)
        self.quantizer = build_quantizer(
            config.code_dim, config.codebook_size, config.ema_decay, config.kmeans_init, config.kmeans_iters,
            config.threshold_ema_dead_code, config.beta, config.rotation_trick,
        )  # fmt: skip
        self.decoder = mlp(config.code_dim, config.hidden, feature_dim, config.layers, nn.SiLU)
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        # NaN until training measures them; infer_mask treats NaN as "no statistics".
        self.register_buffer("recon_error_quantiles", torch.full((len(RECON_QUANTILES),), float("nan")))

    # --- facts -------------------------------------------------------------------------------------------

    @property
    def horizon(self) -> int:
        """H, steps per window."""
        return self.config.horizon

    @property
    def codebook_size(self) -> int:
        """L, number of skill tokens."""
        return self.config.codebook_size

    @property
    def pos_dim(self) -> int:
        """P, dimension of a position."""
        return self._pos_dim

    @property
    def device(self) -> torch.device:
        """Device of the model's tensors."""
        return self.feature_mean.device

    @property
    def recon_error_p50(self) -> float:
        """Median reconstruction error on the training windows (NaN if untrained)."""
        return float(self.recon_error_quantiles[0])

    @property
    def recon_error_p99(self) -> float:
        """99th-percentile reconstruction error on the training windows (NaN if untrained)."""
        return float(self.recon_error_quantiles[1])

    @property
    def codebook_initialised(self) -> bool:
        """Whether the codebook holds trained codes. With k-means init the library would otherwise silently
        fit the codebook to the first batch it is shown, even in eval mode."""
        return bool(self.quantizer._codebook.initted)

    # --- features ----------------------------------------------------------------------------------------

    def _check_windows(self, windows: torch.Tensor) -> None:
        if windows.ndim != 3 or windows.shape[1] != self.horizon or windows.shape[2] != self.pos_dim:
            raise ValueError(
                f"windows must have shape (B, {self.horizon}, {self.pos_dim}) for this tokenizer "
                f"(horizon={self.horizon}, pos_dim={self.pos_dim}), got {tuple(windows.shape)}"
            )

    def normalised_features(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, H, P) windows -> (B, H*P) normalised features, on the model's device."""
        self._check_windows(windows)
        windows = windows.to(device=self.device, dtype=self.feature_mean.dtype)
        return (window_features(windows, self.config.displacement_scale) - self.feature_mean) / self.feature_std

    def set_normalisation(self, features: torch.Tensor) -> None:
        """Fit the normalisation to (N, H*P) raw features: per-feature mean, one pooled std for all features.

        The std is pooled so the displacement_scale weighting survives (see skills.windows).
        """
        mean = features.mean(dim=0)
        pooled = (features - mean).pow(2).mean().sqrt()
        std = pooled if pooled > MIN_FEATURE_STD else torch.ones_like(pooled)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.expand_as(self.feature_std))

    # --- model -------------------------------------------------------------------------------------------

    def _loss_from_features(self, features: torch.Tensor) -> TokenizerLoss:
        """(B, H*P) normalised features -> loss terms; codebook EMA updates happen here in train mode."""
        latent = self.encoder(features)  # (B, D)
        quantised, indices, commitment = self.quantizer(latent)  # (B, D), (B,), () already weighted by beta
        reconstruction = F.mse_loss(self.decoder(quantised), features)
        return TokenizerLoss(reconstruction + commitment, reconstruction, commitment, indices)

    def compute_loss(self, windows: torch.Tensor) -> TokenizerLoss:
        """Loss on a batch of (B, H, P) windows."""
        return self._loss_from_features(self.normalised_features(windows))

    def _require_trained(self) -> None:
        if not self.codebook_initialised:
            raise RuntimeError(
                "the tokenizer's codebook is not initialised; train it with train_tokenizer or load one with "
                "SkillTokenizer.from_pretrained before encoding"
            )

    @torch.no_grad()
    def _encode_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H*P) normalised features -> ((N,) tokens, (N,) reconstruction errors), without codebook updates."""
        was_training = self.training
        self.eval()  # eval mode: the library skips EMA updates and dead-code expiry
        try:
            tokens, errors = [], []
            for chunk in features.split(ENCODE_CHUNK):
                quantised, indices, _ = self.quantizer(self.encoder(chunk))
                tokens.append(indices)
                errors.append((self.decoder(quantised) - chunk).pow(2).mean(dim=-1))
        finally:
            self.train(was_training)
        if not tokens:
            empty = features.new_zeros(0)
            return empty.long(), empty
        return torch.cat(tokens), torch.cat(errors)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, H, P) windows -> (B,) int64 skill tokens on the model's device. Never updates the codebook."""
        self._require_trained()
        return self._encode_features(self.normalised_features(windows))[0]

    def reconstruction_error(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, H, P) windows -> (B,) mean squared error of the decoded token on normalised features."""
        self._require_trained()
        return self._encode_features(self.normalised_features(windows))[1]

    def encode_with_error(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, P) windows -> ((B,) tokens, (B,) reconstruction errors) in one pass."""
        self._require_trained()
        return self._encode_features(self.normalised_features(windows))

    @torch.no_grad()
    def token_starts(self) -> torch.Tensor:
        """(L, P) world position where each skill starts: the absolute start its codeword decodes to.

        The window features begin with the absolute start position (see skills.windows), so the decoder's first
        P outputs, unnormalised, place every token on the map; the planner's fallback steers towards them.
        """
        self._require_trained()
        decoded = self.decoder(self.quantizer.codebook) * self.feature_std + self.feature_mean  # (L, H*P)
        return decoded[:, : self.pos_dim]

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Alias of ``encode``: (B, H, P) -> (B,) tokens."""
        return self.encode(windows)

    # --- persistence -------------------------------------------------------------------------------------

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"pos_dim": self.pos_dim}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, torch.Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> SkillTokenizer:
        """In eval mode, on ``device`` (default: the config's)."""
        config = config_from_dict(TokenizerConfig, values, folder / CONFIG_NAME)
        pos_dim = extra.get("pos_dim")
        if isinstance(pos_dim, bool) or not isinstance(pos_dim, int) or pos_dim < 1:
            raise CheckpointError(f"{folder / CONFIG_NAME}: extra.pos_dim must be a positive integer, got {pos_dim!r}")
        model = cls(config, pos_dim)
        load_module_state(model, state, folder / WEIGHTS_NAME)
        target = torch.device(device) if device is not None else config.resolve_device()
        return model.to(target).eval()


def _usage_report(
    model: SkillTokenizer, features: torch.Tensor, final_loss: float
) -> tuple[TokenizerReport, torch.Tensor]:
    """Encode all (N, H*P) normalised training features; returns the report and the (2,) error quantiles."""
    tokens, errors = model._encode_features(features)
    counts = torch.bincount(tokens, minlength=model.codebook_size).double()
    probs = counts / counts.sum()
    nonzero = probs[probs > 0]
    perplexity = float(torch.exp(-(nonzero * nonzero.log()).sum()))
    live = int((counts > 0).sum())
    # numpy: torch.quantile refuses inputs above 16M elements, and this runs once per training.
    quantiles = torch.as_tensor(np.quantile(errors.double().cpu().numpy(), RECON_QUANTILES))
    report = TokenizerReport(
        final_loss=final_loss,
        perplexity=perplexity,
        live_codes=live,
        codebook_size=model.codebook_size,
        usage_fraction=live / model.codebook_size,
        recon_error_p50=float(quantiles[0]),
        recon_error_p99=float(quantiles[1]),
    )
    return report, quantiles.float()


class _TensorState:
    """A tensor whose contents are checkpointed in place with the training loop."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"tensor": self.tensor}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.tensor.copy_(state["tensor"])


def train_tokenizer(
    windows: np.ndarray,
    config: TokenizerConfig,
    progress: bool = True,
    settings: LoopSettings | None = None,
) -> tuple[SkillTokenizer, TokenizerReport]:
    """Train a skill tokenizer on (N, H, P) position windows (``skills.windows.position_windows`` per episode).

    Returns the model in eval mode on ``config.device`` and its report. A collapsed codebook (usage fraction
    below COLLAPSE_USAGE_FRACTION) raises CodebookCollapseError, or warns with CodebookCollapseWarning when
    ``config.allow_collapse`` is set. The caller's global RNG state is left untouched.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3:
        raise ValueError(f"windows must have shape (N, H, P), got shape {windows.shape}")
    count, horizon, pos_dim = windows.shape
    if horizon != config.horizon:
        raise ValueError(f"windows have {horizon} steps but TokenizerConfig.horizon is {config.horizon}")
    if count < config.codebook_size:
        raise ValueError(
            f"{count} training windows cannot fill a codebook of TokenizerConfig.codebook_size="
            f"{config.codebook_size}; give more data or a smaller codebook"
        )
    if not np.all(np.isfinite(windows)):
        raise ValueError("training windows contain NaN or inf")
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        # The library's k-means and dead-code sampling draw from the global RNG, so seeding it is the only
        # way to make training reproducible; fork_rng keeps that from leaking into the caller.
        torch.manual_seed(config.seed)
        model = SkillTokenizer(config, pos_dim).to(device)
        data = torch.as_tensor(windows, dtype=torch.float32, device=device)  # (N, H, P)
        raw = window_features(data, config.displacement_scale)  # (N, H*P)
        model.set_normalisation(raw)
        features = (raw - model.feature_mean) / model.feature_std
        del data, raw

        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed)
        if config.kmeans_init:
            # Fit the codebook on a large sample rather than on whatever the first batch happens to hold.
            sample = torch.randperm(count, generator=generator, device=device)[: config.kmeans_init_samples]
            with torch.no_grad():
                model.eval()
                model.quantizer(model.encoder(features[sample]))
                # The library leaves the EMA counts on the scale of the k-means sample (~samples / L per code),
                # while threshold_ema_dead_code is a count per batch: without rescaling no code can expire
                # until the counts have decayed for hundreds of steps. Scaling counts and sums together
                # leaves the codes themselves unchanged.
                codebook = model.quantizer._codebook
                ratio = config.batch_size / sample.numel()
                codebook.cluster_size.mul_(ratio)
                codebook.embed_avg.mul_(ratio)

        model.train()
        optimiser = torch.optim.Adam(
            [p for name, p in model.named_parameters() if not name.startswith("quantizer.")], lr=config.lr
        )
        prepared, optimiser = accelerator.prepare(model, optimiser)
        losses = torch.zeros(config.steps, device=device)
        seen = torch.zeros(config.codebook_size, dtype=torch.bool, device=device)

        def step(index: int) -> dict[str, torch.Tensor]:
            batch = torch.randint(count, (config.batch_size,), generator=generator, device=device)
            loss = model._loss_from_features(features[batch])
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(loss.total)
            accelerator.clip_grad_norm_(prepared.parameters(), config.grad_clip)
            optimiser.step()
            losses[index] = loss.total.detach()
            seen[loss.indices] = True
            logs = {"loss": loss.total.detach(), "live": seen.sum()}
            if (index + 1) % LOG_EVERY == 0:
                seen.zero_()
            return logs

        run_loop(
            "skill tokenizer", accelerator, config.steps, step,
            {"rng": GeneratorState(generator), "losses": _TensorState(losses)},
            settings or LoopSettings(progress=progress), log_every=LOG_EVERY,
        )  # fmt: skip
        model = accelerator.unwrap_model(prepared)

        final_loss = float(losses[-FINAL_LOSS_WINDOW:].mean())
        report, quantiles = _usage_report(model, features, final_loss)
        model.recon_error_quantiles.copy_(quantiles.to(device))
        model.eval()

    if report.collapsed:
        message = (
            f"skill codebook collapsed: only {report.live_codes} of {report.codebook_size} codes "
            f"({report.usage_fraction:.0%}, perplexity {report.perplexity:.1f}) are used on the training windows, "
            f"below the {COLLAPSE_USAGE_FRACTION:.0%} floor. Tokens from it cannot separate routes. Check that the "
            "windows vary (not constant or padded), lower codebook_size, or raise threshold_ema_dead_code."
        )
        if not config.allow_collapse:
            raise CodebookCollapseError(message, report, model)
        warnings.warn(message + " (returned anyway because allow_collapse=True)", CodebookCollapseWarning, stacklevel=2)
    return model, report
