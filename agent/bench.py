"""Benchmarks behind `mstt bench ...`: each prints medians of several runs, ratios taken side by
side in the same process, and the machine it ran on, so BENCHMARKS.md can quote it verbatim.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import numpy as np

from agent.tasks import Task


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, {date.today()}"


def _rate(run: Callable[[], int]) -> float:
    """Steps per second of one call of `run` (which returns the steps it took)."""
    start = time.perf_counter()
    steps = run()
    return steps / (time.perf_counter() - start)


def collection_rate(task: Task, transitions: int, repeats: int) -> dict[str, object]:
    """Expert collection rate (what `mstt collect` does before writing) against the raw env.step
    rate with zero actions, alternated in the same process so machine load hits both alike."""
    env = task.make_env()
    sim = env.unwrapped
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape)

    def raw() -> int:
        for _ in range(transitions):
            sim.step(action)
        return transitions

    def collect() -> int:
        return sum(len(e) for e in task.source_episodes(transitions, seed=0))

    raw_rates, collect_rates = [], []
    for _ in range(repeats):
        raw_rates.append(_rate(raw))
        collect_rates.append(_rate(collect))
    env.close()
    return {
        "machine": machine(),
        "transitions_per_run": transitions,
        "repeats": repeats,
        "collect_median": statistics.median(collect_rates),
        "raw_env_step_median": statistics.median(raw_rates),
        "collect_runs": collect_rates,
        "raw_runs": raw_rates,
    }


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def planning_latency(models: object, planner_config: object, repeats: int, demo_mask_share: float = 0.15) -> dict[str, object]:
    """Decision latency of the batched planner against the one-at-a-time reference (the paper's
    Algorithm 2) on the same models, states and mask, plus DDIM-k against full DDPM sampling."""
    import torch

    from skills.planner import SkillPlanner

    planner = SkillPlanner(models.generator, models.tokenizer, models.critic, planner_config)  # type: ignore[attr-defined]
    num_skills = models.tokenizer.codebook_size  # type: ignore[attr-defined]
    state_dim = models.generator.state_dim  # type: ignore[attr-defined]
    goal_dim = models.critic.goal_dim  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(0)
    states = torch.zeros(1, state_dim)
    goals = torch.zeros(1, goal_dim)
    # A demo-like mask: the tokens of the planner's own first candidates plus random others, so
    # candidates do survive (a random mask of 15% would starve the reference of feasible draws).
    first = planner.plan(states, torch.ones(1, num_skills, dtype=torch.bool), goals)
    mask = torch.rand(1, num_skills, generator=gen) < demo_mask_share
    mask[0, first.token] = True
    batched = _median_ms(lambda: planner.plan(states, mask, goals), repeats)
    reference = _median_ms(lambda: planner.plan_one_at_a_time(states, mask, goals), max(3, repeats // 5))
    n = planner_config.n_candidates  # type: ignore[attr-defined]
    ddim = _median_ms(lambda: models.generator.sample(states, n), repeats)  # type: ignore[attr-defined]
    ddpm = _median_ms(lambda: models.generator.sample_ddpm(states, n), max(3, repeats // 5))  # type: ignore[attr-defined]
    envs = 25
    batched_25 = _median_ms(
        lambda: planner.plan(states.expand(envs, -1), mask.expand(envs, -1), goals.expand(envs, -1)),
        max(3, repeats // 5),
    )
    return {
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "n_candidates": n,
        "batched_ms": batched,
        "one_at_a_time_ms": reference,
        "speedup": reference / batched,
        "batched_25_envs_ms": batched_25,
        "ddim_steps": models.generator.config.inference_steps,  # type: ignore[attr-defined]
        "ddim_sample_ms": ddim,
        "ddpm_100_sample_ms": ddpm,
    }
