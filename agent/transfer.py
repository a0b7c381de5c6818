"""`mstt eval`: zero-shot transfer to each target world from one demo, every method side by side.

Per target: demo -> mask (mask inference), then each method runs the same episodes in the same
vector env. The JSON shape is fixed so that others can read it:
{"task", "config", "episodes", "variants": {VARIANT: {METHOD: {goal_rate, goal_ci95, ...}}}}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.demo import Demo
from agent.evaluate import (
    ConstantCritic,
    PlanController,
    PolicyController,
    make_vector_env,
    oracle_mask,
    random_mask,
    result_dict,
    rollout,
    summarise,
)
from agent.experiment import Experiment
from agent.io import write_json_atomic
from agent.tasks import make_task
from agent.train import load_models, source_data
from skills.masks import infer_mask, token_sequence
from skills.planner import SkillPlanner


def evaluate_transfer(
    experiment: Experiment,
    run: Path,
    episodes: int | None = None,
    json_path: Path | None = None,
    demo_path: Path | None = None,
    methods: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    config = experiment.config
    settings = config.eval
    episodes = episodes or settings.episodes
    methods = methods or list(settings.methods)
    models = load_models(run)
    device = models.generator.device
    horizon = models.tokenizer.horizon
    num_skills = models.tokenizer.codebook_size
    replan_every = settings.replan_every or horizon
    task_pos_dim = make_task(experiment.source).pos_dim
    planner_config = config.planner
    if planner_config.pos_stop - planner_config.pos_start != task_pos_dim:
        raise ValueError(
            f"{experiment.path}: planner.pos_start/pos_stop select "
            f"{planner_config.pos_stop - planner_config.pos_start} dims, the task's positions have {task_pos_dim}"
        )
    planners = {
        "learned": SkillPlanner(models.generator, models.tokenizer, models.critic, planner_config),
        "constant": SkillPlanner(
            models.generator, models.tokenizer, ConstantCritic(num_skills), planner_config
        ),
    }
    oracle_inputs = None
    if "oracle_mask" in methods:
        source_task, data = source_data(experiment, progress)
        positions = [source_task.positions(e.observations) for e in data]
        oracle_inputs = (positions, [token_sequence(p, models.tokenizer, 1) for p in positions])

    results: dict[str, Any] = {}
    demos: dict[str, Any] = {}
    for variant, target_config in experiment.targets.items():
        task = make_task(target_config)
        demo_file = demo_path or experiment.demo_files.get(variant)
        demo = Demo.load(demo_file) if demo_file else task.scripted_demo()
        mask, report = infer_mask(
            demo.positions,
            models.tokenizer,
            config.mask,
            step_length=models.stats.step_length,
            timestamps=None if demo.timestamps is None else np.asarray(demo.timestamps),
            dt=None if demo.timestamps is None else models.stats.dt,
        )
        mask = mask.cpu()
        if progress:
            print(f"[{variant}] demo ({demo.source}, {len(demo.points)} points): {report.message}")
        masks = {
            "mstt": mask,
            "mask_only": mask,
            "unmasked": torch.ones(num_skills, dtype=torch.bool),
            "random_mask": random_mask(int(mask.sum()), num_skills, settings.seed),
        }
        if oracle_inputs is not None:
            masks["oracle_mask"] = oracle_mask(
                task, *oracle_inputs, horizon, num_skills, settings.oracle_tolerance
            )
        venv = make_vector_env(task, settings.n_envs)
        variant_results: dict[str, Any] = {}
        try:
            for method in methods:
                if method == "bc":
                    controller: Any = PolicyController(models.bc.act)
                    mask_size = None
                else:
                    planner = planners["constant" if method == "mask_only" else "learned"]
                    controller = PlanController(task, planner.plan, masks[method], replan_every, device)
                    mask_size = int(masks[method].sum())
                outcomes = rollout(
                    task, venv, controller, episodes, settings.seed, progress, desc=f"{variant}/{method}"
                )
                result = summarise(outcomes, mask_size, controller.fallback_rate)
                variant_results[method] = result_dict(result)
                if progress:
                    lo, hi = result.goal_ci95
                    print(
                        f"[{variant}] {method:12s} goal {result.goal_rate:6.1%} [{lo:.2f}, {hi:.2f}]"
                        f"  return {result.return_mean:7.2f}  failure {result.failure_rate:6.1%}"
                        f"  mask {mask_size}"
                    )
        finally:
            venv.close()
        if "oracle_mask" in masks:
            oracle = masks["oracle_mask"]
            # Precision: share of the demo's tokens that the true walls allow (1 - leakage).
            report_extra = {"demo_tokens_feasible_share": float((mask & oracle).sum() / max(1, int(mask.sum())))}
        else:
            report_extra = {}
        demos[variant] = {
            **report_extra,
            "source": demo.source,
            "tokens_active": report.tokens_active,
            "in_distribution_share": report.in_distribution_share,
            "flagged": report.flagged,
        }
        results[variant] = variant_results
    output = {
        "task": experiment.source.task,
        "config": str(experiment.path),
        "episodes": episodes,
        "variants": results,
        "demos": demos,
    }
    if json_path is not None:
        write_json_atomic(output, json_path)
    return output
