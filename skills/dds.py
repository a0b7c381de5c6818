"""Discrete Diffusion Skills (DDS, arXiv 2503.20176): the agent that ties the skill encoder, the diffusion
action decoder, the segment relabelling and IQL over the discrete skills together.

Stages: (1) encoder + decoder learn skills jointly on H-step state-action windows; (2) the dataset is relabelled
into skill-level transitions; (3) IQL learns a high-level policy over the K skills. At run time the high level
picks a skill every H steps from (observation, desired goal) and the decoder executes it closed loop: one action
from the current state and the skill's code at every step. The goal conditions only the high level: skills are
goal-agnostic behaviours, the choice among them is what depends on the goal.

Episodes are dicts of arrays: observations (T + 1, S), actions (T, A), rewards (T,), terminals (T,) and goals
(T + 1, G) (the desired goal of each observation; G = 0 when the task has none).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat

from mstt.skills.action_decoder import ActionDecoder, ActionDecoderConfig
from mstt.skills.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HubComponent, config_from_dict, load_module_state
from mstt.skills.dds_encoder import SkillEncoder, SkillEncoderConfig
from mstt.skills.iql import IQLConfig, IQLLearner, IQLReport, train_iql
from mstt.skills.quantiser import codebook_usage, kmeans_initialise
from mstt.skills.relabel import SkillTransitions, relabel_episode, state_action_windows
from mstt.skills.training import GeneratorState, LoopSettings, make_accelerator, run_loop

SKILLS_KIND = "dds_skills"
SKILLS_DIR, HIGH_LEVEL_DIR = "skills", "high_level"
LOG_EVERY = 50
FINAL_LOSS_WINDOW = 100
"""The reported skill loss is averaged over this many last steps."""
COLLAPSE_USAGE_FRACTION = 0.25
"""A skill codebook using fewer than this share of its codes on its training windows is reported collapsed."""

Episode = dict[str, np.ndarray]


@dataclass(frozen=True)
class DDSConfig:
    """Every hyper-parameter of DDS: its three models and the skill-learning run."""

    encoder: SkillEncoderConfig = field(default_factory=SkillEncoderConfig)
    decoder: ActionDecoderConfig = field(default_factory=ActionDecoderConfig)
    iql: IQLConfig = field(default_factory=IQLConfig)
    """The high level's IQL (paper: expectile 0.7, gamma 0.99, target EMA 0.005)."""
    skill_steps: int = 5_000
    """Joint encoder + decoder training steps."""
    skill_batch_size: int = 256
    """Windows per skill-training step (each gives H decoder samples)."""
    skill_lr: float = 3e-4
    """AdamW learning rate of encoder and decoder."""
    grad_clip: float = 1.0
    """Max global gradient norm of the skill step."""
    window_stride: int = 1
    """Steps between the starts of skill-training windows."""
    relabel_stride: int = 1
    """Steps between the starts of relabelled segments (the high level's transitions)."""
    usage_samples: int = 100_000
    """Training windows (drawn at random) the codebook-usage report encodes; bounds its cost on big datasets."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name, cls in (("encoder", SkillEncoderConfig), ("decoder", ActionDecoderConfig), ("iql", IQLConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):  # YAML / JSON give plain mappings
                try:
                    object.__setattr__(self, name, cls(**value))
                except TypeError as error:
                    raise ValueError(f"DDSConfig.{name}: {error}") from error
            elif not isinstance(value, cls):
                raise ValueError(f"DDSConfig.{name} must be a {cls.__name__}, got {type(value).__name__}")
        for name in ("skill_steps", "skill_batch_size", "window_stride", "relabel_stride", "usage_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DDSConfig.{name} must be a positive integer, got {value!r}")
        for name in ("skill_lr", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DDSConfig.{name} must be a finite number > 0, got {value!r}")
        limit = self.skill_batch_size / self.encoder.codebook_size
        if self.encoder.threshold_ema_dead_code >= limit:
            raise ValueError(
                f"DDSConfig.encoder.threshold_ema_dead_code={self.encoder.threshold_ema_dead_code} must be below "
                f"skill_batch_size / codebook_size = {limit:.3g}, or codes are re-seeded every step"
            )

    @property
    def horizon(self) -> int:
        return self.encoder.horizon


# --------------------------------------------------------------------------------------------------------------
# Stage 1: skills


@dataclass(frozen=True)
class SkillLoss:
    total: torch.Tensor
    decoder: torch.Tensor
    commitment: torch.Tensor
    indices: torch.Tensor
    """(B,) skill of each window."""


class DDSSkills(HubComponent):
    """The skill encoder and the action decoder, trained and saved together."""

    checkpoint_kind = SKILLS_KIND

    def __init__(self, config: DDSConfig, state_dim: int, action_dim: int) -> None:
        super().__init__()
        self.config, self.state_dim, self.action_dim = config, state_dim, action_dim
        self.encoder = SkillEncoder(config.encoder, state_dim, action_dim)
        self.decoder = ActionDecoder(config.decoder, state_dim, action_dim, config.encoder.code_dim)

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def num_skills(self) -> int:
        return self.config.encoder.codebook_size

    def compute_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> SkillLoss:
        """(B, H, S + A) windows -> decoder loss on every step given its state and the window's skill + commitment."""
        encoded = self.encoder(windows)
        states = rearrange(windows[..., : self.state_dim], "b h s -> (b h) s")
        actions = rearrange(windows[..., self.state_dim :], "b h a -> (b h) a")
        codes = repeat(encoded.codes, "b d -> (b h) d", h=windows.shape[1])
        decoder = self.decoder.compute_loss(states, codes, actions, generator)
        return SkillLoss(decoder + encoded.commitment, decoder, encoded.commitment, encoded.indices)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim}

    @classmethod
    def from_checkpoint(
        cls,
        state: Mapping[str, torch.Tensor],
        values: dict[str, Any],
        extra: dict[str, Any],
        folder: Path,
        device: str | torch.device | None,
    ) -> DDSSkills:
        """In eval mode, on ``device`` (default: the CPU)."""
        config = config_from_dict(DDSConfig, values, folder / CONFIG_NAME)
        model = cls(config, int(extra["state_dim"]), int(extra["action_dim"]))
        load_module_state(model, state, folder / WEIGHTS_NAME)
        return model.to(device or "cpu").eval()


@dataclass(frozen=True)
class SkillReport:
    """How skill learning went, measured on the training windows after the last step."""

    final_loss: float
    perplexity: float
    """exp(entropy) of the skill distribution on (up to usage_samples) training windows: the effective number."""
    live_codes: int
    codebook_size: int
    usage_fraction: float
    collapsed: bool
    """usage_fraction < COLLAPSE_USAGE_FRACTION."""
    steps: int
    seconds: float


def skill_windows(episodes: Sequence[Episode], horizon: int, stride: int) -> np.ndarray:
    """(N, H, S + A) state-action windows of every episode."""
    parts = [state_action_windows(e["observations"], e["actions"], horizon, stride) for e in episodes]
    windows = np.concatenate(parts) if parts else np.zeros((0,))
    if len(windows) == 0:
        raise ValueError(f"no episode is long enough for a skill window of H={horizon}")
    return windows


def train_skills(
    windows: np.ndarray, config: DDSConfig, state_dim: int, progress: bool = True, settings: LoopSettings | None = None
) -> tuple[DDSSkills, SkillReport]:
    """Train encoder and decoder jointly on (N, H, S + A) windows; the first state_dim channels are the state."""
    started = time.perf_counter()
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    data = torch.as_tensor(np.asarray(windows), dtype=torch.float32, device=device)
    if data.ndim != 3 or data.shape[1] != config.horizon or not 0 < state_dim < data.shape[2]:
        raise ValueError(
            f"windows must be (N, H={config.horizon}, S + A) with S={state_dim} < S + A, got {tuple(data.shape)}"
        )
    if data.shape[0] < config.encoder.codebook_size:
        raise ValueError(f"{data.shape[0]} windows cannot fill a codebook of {config.encoder.codebook_size} skills")
    count = data.shape[0]
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        # The quantiser's k-means and dead-code sampling draw from the global RNG: seed it, without leaking.
        torch.manual_seed(config.seed)
        model = DDSSkills(config, state_dim, data.shape[2] - state_dim).to(device)
        model.encoder.set_normalisation(data)
        flat = rearrange(data, "n h c -> (n h) c")
        model.decoder.set_normalisation(flat[:, :state_dim], flat[:, state_dim:])
        generator = torch.Generator(device=device).manual_seed(config.seed)
        if config.encoder.kmeans_init:
            sample = torch.randperm(count, generator=generator, device=device)[: config.encoder.kmeans_init_samples]
            with torch.no_grad():
                latents = torch.cat([model.encoder.latent(chunk) for chunk in data[sample].split(4096)])
            kmeans_initialise(model.encoder.quantizer, latents, config.skill_batch_size)
        optimiser = torch.optim.AdamW(
            [p for n, p in model.named_parameters() if not n.startswith("encoder.quantizer.")], lr=config.skill_lr
        )
        prepared, optimiser = accelerator.prepare(model, optimiser)
        losses = torch.zeros(config.skill_steps, device=device)
        model.train()

        def step(index: int) -> dict[str, torch.Tensor]:
            batch = torch.randint(count, (config.skill_batch_size,), generator=generator, device=device)
            loss = model.compute_loss(data[batch], generator)
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(loss.total)
            accelerator.clip_grad_norm_(prepared.parameters(), config.grad_clip)
            optimiser.step()
            losses[index] = loss.total.detach()
            live = torch.bincount(loss.indices, minlength=model.num_skills).gt(0).sum()
            return {"loss": loss.total.detach(), "decoder": loss.decoder.detach(), "live": live}

        run_loop("dds skills", accelerator, config.skill_steps, step,
                 {"rng": GeneratorState(generator), "losses": _TensorState(losses)},
                 settings or LoopSettings(progress=progress), log_every=LOG_EVERY)  # fmt: skip
        model = accelerator.unwrap_model(prepared).eval()
    audit = torch.randperm(count, generator=generator, device=device)[: config.usage_samples]
    usage = codebook_usage(model.encoder.encode(data[audit]), model.num_skills)
    report = SkillReport(
        final_loss=float(losses[-FINAL_LOSS_WINDOW:].mean()),
        perplexity=usage.perplexity,
        live_codes=usage.live_codes,
        codebook_size=usage.codebook_size,
        usage_fraction=usage.usage_fraction,
        collapsed=usage.usage_fraction < COLLAPSE_USAGE_FRACTION,
        steps=config.skill_steps,
        seconds=time.perf_counter() - started,
    )
    return model, report


class _TensorState:
    """A tensor checkpointed in place with the training loop."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"tensor": self.tensor}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.tensor.copy_(state["tensor"])


# --------------------------------------------------------------------------------------------------------------
# Stage 2: relabelling; stage 3: the high level


def relabel_dataset(skills: DDSSkills, episodes: Sequence[Episode], gamma: float, stride: int) -> SkillTransitions:
    """Every H-step segment of every episode as (s, g, z, discounted return, s', g', done)."""
    horizon = skills.horizon
    parts = []
    for episode in episodes:
        windows = state_action_windows(episode["observations"], episode["actions"], horizon, stride)
        if len(windows) == 0:
            continue
        indices = skills.encoder.encode(torch.as_tensor(windows, device=skills.encoder.device)).cpu().numpy()
        parts.append(
            relabel_episode(episode["observations"], episode["rewards"], episode["terminals"], indices, horizon, gamma,
                            stride, episode.get("goals"))  # fmt: skip
        )
    return SkillTransitions.concatenate(parts)


def transitions_for_iql(transitions: SkillTransitions) -> dict[str, np.ndarray]:
    """SkillTransitions -> the arrays train_iql reads (the skill index is the discrete action)."""
    return {
        "observations": transitions.observations, "goals": transitions.goals, "actions": transitions.skills,
        "returns": transitions.returns, "discounts": transitions.discounts, "dones": transitions.dones,
        "next_observations": transitions.next_observations, "next_goals": transitions.next_goals,
    }  # fmt: skip


class DDSAgent:
    """Skills + high-level policy, acting closed loop in many envs at once."""

    def __init__(self, skills: DDSSkills, high_level: IQLLearner, seed: int = 0) -> None:
        if high_level.action_kind != "discrete" or high_level.action_dim != skills.num_skills:
            raise ValueError(
                f"the high level must choose among the {skills.num_skills} skills, got a {high_level.action_kind} "
                f"learner over {high_level.action_dim}"
            )
        self.skills, self.high_level = skills.eval(), high_level.eval()
        self.seed = seed
        self.reset(0)

    @property
    def horizon(self) -> int:
        return self.skills.horizon

    def reset(self, n_envs: int, seed: int | None = None) -> None:
        """Forget current skills; the next act() picks new ones. Seeds the decoder's sampling noise."""
        self._skills: torch.Tensor | None = None
        self._age = 0
        noise_seed = self.seed if seed is None else seed
        self._noise = torch.Generator(device=self.skills.decoder.device).manual_seed(noise_seed)
        self.chosen: list[np.ndarray] = []

    @torch.no_grad()
    def act(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(E, S) observations and (E, G) desired goals -> (E, A) actions; a new skill per env every H calls."""
        device = self.skills.decoder.device
        obs = torch.as_tensor(observations, dtype=torch.float32, device=device)
        goal = torch.as_tensor(goals, dtype=torch.float32, device=device)
        if self._skills is None or self._age >= self.horizon or self._skills.shape[0] != obs.shape[0]:
            self._skills = self.high_level.act(obs, goal).to(device)
            self._age = 0
            self.chosen.append(self._skills.cpu().numpy())
        self._age += 1
        codes = self.skills.encoder.code_vectors(self._skills)
        return self.skills.decoder.sample(obs, codes, generator=self._noise).cpu().numpy()

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        root = Path(directory)
        self.skills.save_pretrained(root / SKILLS_DIR)
        self.high_level.save_pretrained(root / HIGH_LEVEL_DIR)
        return root

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: str | None = None, seed: int = 0) -> DDSAgent:
        root = Path(directory)
        return cls(DDSSkills.from_pretrained(root / SKILLS_DIR, device=device),
                   IQLLearner.from_pretrained(root / HIGH_LEVEL_DIR, device=device), seed)  # fmt: skip


@dataclass(frozen=True)
class DDSReport:
    skills: SkillReport
    transitions: int
    """Skill-level transitions the high level trained on."""
    done_fraction: float
    """Share of them ended by a terminal inside the segment."""
    high_level: IQLReport


def train_dds(
    episodes: Sequence[Episode],
    config: DDSConfig,
    progress: bool = True,
    settings: Callable[[str], LoopSettings] | None = None,
    skills: DDSSkills | None = None,
) -> tuple[DDSAgent, DDSReport | dict[str, Any]]:
    """All three stages; ``settings(stage)`` gives each stage's resumable loop folder. Pass trained ``skills`` to
    reuse them (stage 1 then reports only what it measures again)."""
    loop = settings or (lambda _: LoopSettings(progress=progress))
    state_dim = int(np.asarray(episodes[0]["observations"]).shape[1])
    if skills is None:
        windows = skill_windows(episodes, config.horizon, config.window_stride)
        skills, skill_report = train_skills(windows, config, state_dim, progress, loop("dds_skills"))
    else:
        skill_report = None
    transitions = relabel_dataset(skills, episodes, config.iql.gamma, config.relabel_stride)
    iql_config = config.iql if config.iql.device != "auto" else _replace(config.iql, device=config.device)
    high_level, iql_report = train_iql(transitions_for_iql(transitions), iql_config, "discrete", skills.num_skills,
                                       progress, loop("dds_high_level"), name="dds high level")  # fmt: skip
    agent = DDSAgent(skills, high_level, config.seed)
    if skill_report is None:
        return agent, {"transitions": len(transitions), "high_level": iql_report}
    return agent, DDSReport(skill_report, len(transitions), float(transitions.dones.mean()), iql_report)


def _replace(config: Any, **changes: Any) -> Any:

    return replace(config, **changes)


__all__ = ["DDSAgent", "DDSConfig", "DDSReport", "DDSSkills", "SkillReport", "relabel_dataset", "skill_windows",
           "train_dds", "train_skills", "transitions_for_iql"]  # fmt: skip
