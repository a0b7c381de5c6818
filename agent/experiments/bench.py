"""Benchmarks behind `mstt bench ...`: each prints medians of several runs, ratios taken side by
side in the same process, and the machine it ran on, so BENCHMARKS.md can quote it verbatim.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from typing import Any, NamedTuple

import numpy as np
import torch

from mstt.agent.core.demo import Demo
from mstt.agent.core.provenance import provenance
from mstt.agent.experiments.evaluate import resolved_config
from mstt.agent.experiments.experiment import Experiment
from mstt.agent.experiments.train import source_data
from mstt.agent.worlds import Task, make_task
from mstt.agent.worlds.house import HouseTask
from mstt.agent.worlds.house_frames import collect_frames, expert_stream, render_frames
from mstt.skills.localizer import Localizer, pose_errors
from mstt.skills.masks import infer_mask
from mstt.skills.planner import Plan, SkillPlanner
from mstt.skills.windows import position_windows

Tensor = torch.Tensor


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, {date.today()}"


COLLECT_SEED = 0
"""The seed the collection benchmark collects with."""


def bench_provenance(
    bench: str, settings: dict[str, Any], experiment: Experiment | None = None, device: str | None = None
) -> dict[str, Any]:
    """The provenance block of a benchmark's JSON (agent/core/provenance.py): which benchmark, its settings and, when
    it ran on a trained run, the experiment's resolved config and seeds."""
    config: dict[str, Any] = {"bench": bench, "settings": settings}
    seeds: dict[str, int | None] = {"collect": COLLECT_SEED}
    if experiment is not None:
        config.update(resolved_config(experiment))
        seeds = {"experiment": experiment.config.seed, "eval": experiment.config.eval.seed}
    return provenance(config, seeds, device)


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
        return sum(len(e) for e in task.source_episodes(transitions, seed=COLLECT_SEED))

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


class _Choice(NamedTuple):
    """One environment's decision in the one-at-a-time reference."""

    trajectory: Tensor
    token: int
    q: float
    n_feasible: int
    used_fallback: bool
    rounds: int


@torch.no_grad()
def plan_one_at_a_time(planner: SkillPlanner, states: Tensor, masks: Tensor, goals: Tensor | None = None) -> Plan:
    """The paper's Algorithm 2, one environment and one candidate at a time (slow; the benchmark's reference).

    Per environment: sample one candidate, encode it, reject it if its token is masked, resample; stop after
    ``n_candidates`` accepted candidates or ``n_candidates * (1 + max_resamples)`` draws; score the accepted ones
    with the critic one by one and keep the best. With none accepted, the same fallback as ``plan``.
    """
    states, masks = states.to(planner.device), masks.to(planner.device, torch.bool)
    goals = goals.to(planner.device) if goals is not None else None
    n, budget = planner.config.n_candidates, planner.config.n_candidates * (1 + planner.config.max_resamples)
    chosen: list[_Choice] = []
    for e in range(states.shape[0]):
        s, m = states[e : e + 1], masks[e : e + 1]
        g = goals[e : e + 1] if goals is not None else None
        accepted: list[tuple[float, Tensor, int]] = []
        drawn: list[tuple[Tensor, int]] = []
        for _ in range(budget):
            candidate, token = planner.propose(s, g, 1)
            z = int(token[0, 0])
            drawn.append((candidate[0, 0], z))
            if not bool(m[0, z]):
                continue
            q = float(planner.critic.q_values(s, m, g)[0, z])
            accepted.append((q, candidate[0, 0], z))
            if len(accepted) == n:
                break
        rounds = math.ceil(len(drawn) / n)
        if accepted:
            q, trajectory, z = max(accepted, key=lambda item: item[0])
            chosen.append(_Choice(trajectory, z, q, len(accepted), False, rounds))
            continue
        last = drawn[-n:]
        cands = torch.stack([c for c, _ in last])[None]  # (1, n, H, S + A)
        toks = torch.tensor([[z for _, z in last]], device=planner.device)
        q_all = planner.critic.q_values(s, m, g)
        pick = int(planner.fallback(cands, m)[0])
        z = int(toks[0, pick])
        chosen.append(_Choice(cands[0, pick], z, float(q_all[0, z]), 0, True, rounds))
    return Plan(
        trajectory=torch.stack([c.trajectory for c in chosen]),
        token=torch.tensor([c.token for c in chosen], device=planner.device),
        q=torch.tensor([c.q for c in chosen], device=planner.device),
        n_feasible=torch.tensor([c.n_feasible for c in chosen], device=planner.device),
        used_fallback=torch.tensor([c.used_fallback for c in chosen], device=planner.device),
        rounds=torch.tensor([c.rounds for c in chosen], device=planner.device),
    )


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def planning_latency(
    models: object, planner_config: object, repeats: int, demo_mask_share: float = 0.15,
    demo: tuple[object, object, object] | None = None,
) -> dict[str, object]:  # fmt: skip
    """Decision latency of the batched planner against the one-at-a-time reference (the paper's
    Algorithm 2) on the same models, states and mask, plus DDIM-k against full DDPM sampling.

    ``demo``: (mask (L,), DemoWindows, (T, P) points) of a real demo; with it the planner is also timed as `mstt eval`
    runs it: from the demo's start, towards its end, with its mask and, when ``match_radius`` is set, its windows."""

    planner = models.planner(planner_config)  # type: ignore[attr-defined]
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
    reference = _median_ms(lambda: plan_one_at_a_time(planner, states, mask, goals), max(3, repeats // 5))
    n = planner_config.n_candidates  # type: ignore[attr-defined]
    ddim = _median_ms(lambda: models.generator.sample(states, n, goals), repeats)  # type: ignore[attr-defined]
    ddpm = _median_ms(lambda: models.generator.sample_ddpm(states, n, goals), max(3, repeats // 5))  # type: ignore[attr-defined]
    envs = 25
    batched_25 = _median_ms(
        lambda: planner.plan(states.expand(envs, -1), mask.expand(envs, -1), goals.expand(envs, -1)),
        max(3, repeats // 5),
    )
    timed_demo: dict[str, object] = {}
    if demo is not None:
        demo_mask, anchors, points = demo
        points = torch.as_tensor(points, dtype=torch.float32)
        demo_states, demo_goals = states.clone(), goals.clone()
        demo_states[0, : points.shape[1]] = points[0]
        demo_goals[0, : points.shape[1]] = points[-1, : goal_dim]
        timed_demo = {
            "match_radius": planner_config.match_radius,  # type: ignore[attr-defined]
            "demo_mask_size": int(demo_mask.sum()),  # type: ignore[attr-defined]
            "demo_windows": int(anchors.tokens.numel()),  # type: ignore[attr-defined]
            "batched_demo_ms": _median_ms(
                lambda: planner.plan(demo_states, demo_mask[None], demo_goals, anchors=anchors),  # type: ignore[index]
                repeats,
            ),
        }
    return {
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "n_candidates": n,
        **timed_demo,
        "batched_ms": batched,
        "one_at_a_time_ms": reference,
        "speedup": reference / batched,
        "batched_25_envs_ms": batched_25,
        "ddim_steps": models.generator.config.inference_steps,  # type: ignore[attr-defined]
        "ddim_sample_ms": ddim,
        "ddpm_100_sample_ms": ddpm,
    }


TOKEN_WINDOW_STRIDE = 4
"""Stride of the source windows the token benchmark encodes (every 4th start: plenty, and 4x cheaper)."""


def token_routes(experiment: object, models: object, episodes: int | None = None) -> dict[str, object]:
    """How well skill tokens separate the routes of a maze whose targets each leave one route open.

    A route's *exclusive cells* lie on its target's shortest start -> goal path and on no other target's. A
    source window belongs to a route when it starts and ends in that route's exclusive cells. Reported:
    purity (share of route windows whose token's majority route is their own) and, per target, the share of
    each route's windows whose token the target's demo mask keeps: high on the open route (coverage, about 0.5
    when tokens tell the two directions apart), near 0 on the blocked ones (leakage).
    """


    targets = {v: make_task(c) for v, c in experiment.targets.items()}  # type: ignore[attr-defined]
    paths = {v: {tuple(c) for c in t.layout.shortest_path(t.layout.start, t.layout.goal)} for v, t in targets.items()}
    exclusive = {v: paths[v] - set().union(*(paths[u] for u in paths if u != v)) for v in paths}
    task, data = source_data(experiment, progress=False)  # type: ignore[arg-type]
    tokenizer = models.tokenizer  # type: ignore[attr-defined]
    windows = np.concatenate(
        [position_windows(task.positions(e.observations), tokenizer.horizon, TOKEN_WINDOW_STRIDE)
         for e in data[:episodes]]
    )  # fmt: skip
    with torch.no_grad():
        tokens = torch.cat([tokenizer.encode(torch.as_tensor(w, dtype=torch.float32)) for w in
                            np.array_split(windows, max(1, len(windows) // 20_000))]).cpu().numpy()  # fmt: skip
    layout = next(iter(targets.values())).layout
    first = [layout.xy_to_cell(p) for p in windows[:, 0]]
    last = [layout.xy_to_cell(p) for p in windows[:, -1]]
    on_route = {v: np.array([a in cells and b in cells for a, b in zip(first, last)]) for v, cells in exclusive.items()}
    counts = np.zeros((tokenizer.codebook_size, len(on_route)))
    for j, inside in enumerate(on_route.values()):
        np.add.at(counts[:, j], tokens[inside], 1)
    purity = float(counts.max(axis=1).sum() / max(1.0, counts.sum()))
    share: dict[str, dict[str, float]] = {}
    for variant, target in targets.items():
        demo_file = experiment.demo_files.get(variant)  # type: ignore[attr-defined]
        demo = Demo.load(demo_file) if demo_file else target.scripted_demo()
        mask, _ = infer_mask(demo.positions, tokenizer, experiment.config.mask,  # type: ignore[attr-defined]
                             step_length=models.stats.step_length)  # type: ignore[attr-defined]  # fmt: skip
        kept = mask.cpu().numpy()
        share[variant] = {route: float(kept[tokens[inside]].mean()) for route, inside in on_route.items()}
        share[variant]["mask_size"] = int(kept.sum())
    return {
        "machine": machine(),
        "windows": int(len(windows)),
        "route_windows": {v: int(inside.sum()) for v, inside in on_route.items()},
        "purity": purity,
        "mask_share_of_route_windows": share,
    }


def localizer_errors(experiment: Experiment, localizer: Localizer, frames: int | None = None) -> dict[str, object]:
    """The localizer's pose errors (position in metres, heading in degrees: median and 90th percentile) on frames it
    never trained on, in the source house (another seed of the expert's stream) and in each target variant, whose
    changes (a closed door, a wardrobe, a wet floor) show in the frames. ``single``: one frame each, at the poses
    after every ``every``-th step of the expert's stream; ``filtered``: along ``frames`` consecutive steps of it, each
    reading tracked with the actions and the map by localizer.filter, as pixel observations do, from the first frame's
    reading on. Beside them, the position error of always answering the training frames' mean."""
    settings = experiment.config.localizer
    if settings is None:
        raise ValueError(f"{experiment.path} has no localizer section: nothing to measure")
    count, every, seed = frames or settings.frames.report_frames, settings.frames.every, settings.frames.report_seed
    tasks = {"source": make_task(experiment.source)} | {v: make_task(c) for v, c in experiment.targets.items()}
    mean = localizer.position_mean.cpu().numpy()
    variants: dict[str, object] = {}
    for variant, task in tasks.items():
        assert isinstance(task, HouseTask)  # load_experiment allows a localizer section for egocentric worlds only
        seen = collect_frames(task, count, every, seed)
        single = pose_errors(localizer.locate(seen.frames), seen.poses.astype(np.float64))
        poses, actions = expert_stream(task, count, seed)
        stream = render_frames(task, poses.astype(np.float32))
        readings, still = localizer.locate(stream), (stream[1:] == stream[:-1]).all(axis=(1, 2, 3)).tolist()
        tracker = settings.filter.track(task, readings[0], np.random.default_rng(settings.filter.seed))
        steps = zip(actions.tolist(), readings[1:], still)
        estimates = np.stack([tracker.estimate] + [tracker.step(a, r, s) for a, r, s in steps])
        variants[variant] = {
            "single": asdict(single),
            "filtered": asdict(pose_errors(estimates, poses)),
            "mean_position_median_m": float(np.median(np.linalg.norm(seen.poses[:, :2] - mean, axis=1))),
        }
    filtering = asdict(settings.filter)
    return {"frames": count, "seed": seed, "filter": filtering, "machine": machine(), "variants": variants}
