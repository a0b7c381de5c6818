"""Training batches of the masked critic, drawn on the device from one seeded generator: transition indices, goals
(hindsight, random or demo-like), masks (Bernoulli, data segments, anchored segments) and the data-return bound.

Masks per sample are i.i.d. Bernoulli(``keep_prob``) or, with probability ``structured_mask_fraction``, the union of
the tokens of a few contiguous data segments: demo masks cover 11-18 % of the tokens and are spatially coherent, which
Bernoulli masks alone never show the critic. Some structured masks are *anchored*: one segment contains the sample's
own window, as a demo passing through ``s`` would, so values propagate along masked paths instead of almost every
structured sample hitting the sink. A share ``segment_goal_fraction`` of the anchored ones take as goal the end of
their own segment: the deployment case (mask = the tokens of one demo, goal = where the demo ends); with hindsight
goals alone a segment mask rarely contains a path to the goal, and the critic would learn that almost nothing is
reachable under a demo-sized mask.
"""

from __future__ import annotations

from typing import TypedDict

import torch

from mstt.skills.critic.bellman import continuation_return_bound
from mstt.skills.critic.configuration import CriticConfig
from mstt.skills.critic.transitions import SkillTransitions
from mstt.skills.masks import PAD_TOKEN, bernoulli_masks, segment_masks, uniform_int

Tensor = torch.Tensor


class _SegmentSettings(TypedDict):
    """The keyword arguments of ``segment_masks`` that every structured mask shares."""

    segments_per_mask: int
    min_windows: int
    max_windows: int


class BatchSampler:
    """Draws training batches (indices, goals, rewards, masks) on the device with one seeded generator."""

    def __init__(
        self,
        transitions: SkillTransitions,
        config: CriticConfig,
        segment_table: Tensor,
        segment_lengths: Tensor,
        generator: torch.Generator,
    ) -> None:
        self.data, self.config, self.generator = transitions, config, generator
        self.segment_table, self.segment_lengths = segment_table, segment_lengths
        self.device = transitions.s.device
        self.discount = config.gamma**transitions.horizon
        if not config.goal_conditioned:
            assert config.fixed_goal is not None  # checked in CriticConfig
            self.fixed_goal = torch.tensor(config.fixed_goal, device=self.device)

    def indices(self, batch: int) -> Tensor:
        return torch.randint(len(self.data), (batch,), generator=self.generator, device=self.device)

    def goals(self, idx: Tensor) -> Tensor:
        """(B,) transition indices -> (B, P) goals: hindsight future positions or random achieved positions."""
        if not self.config.goal_conditioned:
            return self.fixed_goal.expand(idx.shape[0], -1)
        data, gen = self.data, self.generator
        episode, start = data.episode[idx], data.start[idx]
        last = data.episode_length[episode] - 1
        future = uniform_int(start + 1, last, gen)
        other = torch.randint(data.achieved.shape[0], idx.shape, generator=gen, device=self.device)
        other_step = uniform_int(torch.zeros_like(other), data.episode_length[other] - 1, gen)
        use_her = torch.rand(idx.shape, generator=gen, device=self.device) < self.config.her_fraction
        return data.achieved[torch.where(use_her, episode, other), torch.where(use_her, future, other_step)]

    def masks_and_goals(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) transition indices -> ((B, L) bool training masks, (B, P) goals).

        Masks are Bernoulli, random segments or anchored segments; goals are hindsight goals, except for the
        share ``segment_goal_fraction`` of anchored rows, whose goal is where their segment ends (demo-like).
        """
        data, cfg, gen, n = self.data, self.config, self.generator, idx.shape[0]
        goals = self.goals(idx)
        bernoulli = bernoulli_masks(n, data.num_skills, cfg.keep_prob, gen)
        segments: _SegmentSettings = {
            "segments_per_mask": cfg.segments_per_mask,
            "min_windows": cfg.segment_min_windows,
            "max_windows": cfg.segment_max_windows,
        }
        free = segment_masks(self.segment_table, self.segment_lengths, n, data.num_skills, gen, **segments)[0]
        anchored, episode, start, length = segment_masks(
            data.episode_tokens,
            data.episode_windows,
            n,
            data.num_skills,
            gen,
            **segments,
            anchor_episode=data.episode[idx],
            anchor_window=data.window[idx],
        )
        kind = torch.rand(n, generator=gen, device=self.device)
        use_anchor = torch.rand(n, generator=gen, device=self.device) < cfg.anchored_segment_fraction
        structured = torch.where(use_anchor[:, None], anchored, free)
        use_structured = kind < cfg.structured_mask_fraction
        masks = torch.where(use_structured[:, None], structured, bernoulli)
        if cfg.goal_conditioned:
            # The last window of the anchored segment starts at step (start + length - 1) * stride; its reward
            # positions end H steps later: the goal sits there, so the segment reaches it.
            end_step = (start + length - 1) * data.stride + data.horizon
            segment_goal = data.achieved[episode, end_step]
            demo_like = use_structured & use_anchor
            demo_like &= torch.rand(n, generator=gen, device=self.device) < cfg.segment_goal_fraction
            goals = torch.where(demo_like[:, None], segment_goal, goals)
        return ensure_both_taken_cases(masks, data.z[idx]), goals

    def return_bound(self, idx: Tensor, goals: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) indices, (B, P) goals, (B, L) masks -> ((B,) data-return bound, (B,) bool where it is defined)."""
        data, skills = self.data, self.config.return_bound_skills
        episode, start, window = data.episode[idx], data.start[idx], data.window[idx]
        steps = start[:, None] + 1 + torch.arange(skills * data.horizon, device=self.device)  # (B, J * H)
        last = data.episode_length[episode] - 1
        positions = data.achieved[episode[:, None], torch.minimum(steps, last[:, None])]
        windows = window[:, None] + torch.arange(skills, device=self.device) * (data.horizon // data.stride)
        in_episode = windows < data.episode_windows[episode][:, None]
        tokens = data.episode_tokens[episode[:, None], windows.clamp_max(data.episode_tokens.shape[1] - 1)]
        tokens = torch.where(in_episode, tokens, torch.full_like(tokens, PAD_TOKEN))
        return continuation_return_bound(
            positions, steps <= last[:, None], goals, tokens, masks, self.config.goal_radius, self.discount
        )


def ensure_both_taken_cases(masks: Tensor, z: Tensor) -> Tensor:
    """Flip m(z) of row 0 if every row agrees on it, so the batch teaches both the sink and the bootstrap."""
    taken = masks.gather(1, z[:, None]).squeeze(1)  # (B,)
    flipped = torch.where(taken.all(), torch.zeros_like(taken[0]), torch.where((~taken).all(), ~taken[0], taken[0]))
    masks = masks.clone()
    masks.index_put_((torch.zeros_like(z[:1]), z[:1]), flipped[None])
    return masks

