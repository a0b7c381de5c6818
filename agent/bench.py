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


def _median_rate(run: Callable[[], int], repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        steps = run()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates), rates


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
        raw_rates.append(_median_rate(raw, 1)[0])
        collect_rates.append(_median_rate(collect, 1)[0])
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
