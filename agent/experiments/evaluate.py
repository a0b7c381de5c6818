"""`mstt eval`: zero-shot transfer to each target world from one demo, every method side by side.

Per target: demo -> mask (mask inference), then each method runs the same episodes in the same
vector env. The JSON shape is fixed so that others can read it:
{"task", "config", "episodes", "variants": {VARIANT: {METHOD: {goal_rate, goal_ci95, ...}}}, ..., "provenance"}.
With a video folder, the first episodes of every variant and method are also filmed (the numbers stay the same).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mstt.agent.core.demo import Demo
from mstt.agent.core.io import portable_path, write_json_atomic
from mstt.agent.core.maze_layout import MazeLayout
from mstt.agent.core.provenance import provenance
from mstt.agent.experiments.controllers import (
    Controller,
    DemoTracker,
    Filming,
    PlanController,
    PolicyController,
    SkillExecutorController,
    action_width,
    diffuser_planner,
    make_vector_env,
    oracle_mask,
    random_mask,
    result_dict,
    rollout,
    summarise,
    tensor_policy,
    write_video,
)
from mstt.agent.experiments.corruptions import CorruptionSpec, corrupt
from mstt.agent.experiments.experiment import Experiment
from mstt.agent.experiments.figures import (
    FRAME_DEMO_RGB,
    FRAME_PLAN_RGB,
    draw_lines,
    maze_transfer_figure,
    picture_transfer_figure,
    token_mean_windows,
)
from mstt.agent.experiments.methods import METHODS, EvalMethod, check_methods
from mstt.agent.experiments.pixels import egocentric_families
from mstt.agent.experiments.train import (
    LOCALIZER_STAGE,
    Models,
    check_baseline_stages,
    check_run_matches,
    dara_stage_name,
    load_models,
    source_data,
)
from mstt.agent.worlds import Task, make_task
from mstt.perception import Scene, draw_demo, make_perceiver
from mstt.skills.critic import ConstantCritic
from mstt.skills.localizer import PoseFilter
from mstt.skills.masks import infer_route_mask, token_sequence
from mstt.skills.planner import PlannerConfig, SkillPlanner
from mstt.skills.windows import position_windows


def evaluate_transfer(
    experiment: Experiment,
    run: Path,
    episodes: int | None = None,
    json_path: Path | None = None,
    demo_path: Path | None = None,
    methods: list[str] | None = None,
    progress: bool = True,
    figures: Path | None = None,
    observation: str | None = None,
    demo_source: str | None = None,
    device: str | None = None,
    corruption: CorruptionSpec | None = None,
    video: Path | None = None,
    video_episodes: int = 1,
) -> dict[str, Any]:
    """Evaluate every method on every target variant; return (and optionally write) the results JSON.

    ``figures``: a folder for one PNG per variant of a world with a map (maze: walls, demo, kept and dropped skills,
    the paths of the ``FIGURE_METHOD`` agent; house: its map picture, the demo and the paths). ``observation``
    overrides the config's eval.observation ("state" or "pixels").
    ``demo_source``: a perception backend ("geometric", "hf", "openai") that reads each variant's demo off its
    rendered start frame, instead of the demo files; the JSON then reports how its mask overlaps the scripted
    demo's. ``corruption``: every variant's demo is corrupted this way (agent/corruptions.py, seeded by eval.seed)
    before it is checked and used. ``video``: a folder for videos of the first ``video_episodes`` episodes of every
    variant and method, VARIANT-METHOD-epN.gif (episode N, 0-based, is reset with seed eval.seed + N), drawn from the
    task's camera with the demo's route and the agent's plan over the frame; the episodes are the same with and
    without them. The provenance block is taken once the models are loaded, before the first episode: it names the
    checkout the code was loaded from, even if the checkout changes during a long evaluation."""
    config = experiment.config
    settings = config.eval
    episodes = episodes or settings.episodes
    methods = check_methods(methods or list(settings.methods), "--methods")
    if video_episodes < 1:
        raise ValueError(f"--video-episodes must be >= 1, got {video_episodes}")
    check_run_matches(run, experiment)
    models = load_models(run, device)
    check_baseline_stages(run, experiment)
    for name in methods:
        missing = missing_stage(METHODS[name], models, list(experiment.targets))
        if missing is not None:
            section = METHODS[name].needs_stage
            raise ValueError(
                f"method {name} needs the {missing} stage, but {run} has none: give {experiment.path} a {section} "
                f"section and run `mstt train` into the run folder"
            )
    observation = observation or settings.observation
    check_pixel_stage(experiment, run, models, observation)
    pose_filter = config.localizer.filter if config.localizer is not None else PoseFilter()
    device = models.generator.device
    started = experiment_provenance(experiment, str(device))
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
    planners = method_planners(models, planner_config)
    oracle_inputs = None
    if any(METHODS[m].mask == "oracle" for m in methods) or figures is not None:
        source_task, data = source_data(experiment, progress)
        positions = [source_task.positions(e.observations) for e in data]
        oracle_inputs = (positions, [token_sequence(p, models.tokenizer, 1) for p in positions])

    results: dict[str, Any] = {}
    demos: dict[str, Any] = {}
    token_windows: np.ndarray | None = None
    for variant, target_config in experiment.targets.items():
        task = make_task(target_config)
        demo_file = demo_path or experiment.demo_files.get(variant)
        scripted = Demo.load(demo_file) if demo_file else task.scripted_demo()
        demo, demo_name = scripted, portable_path(demo_file) if demo_file else f"the scripted demo of {variant}"
        if demo_source is not None:
            demo = perceived_demo(task, demo_source, json_path.parent if json_path is not None else None)
            demo_name = f"the {demo_source} perception demo of {variant}"
        if corruption is not None:
            demo = corrupt(demo, corruption, task, settings.seed)
            demo_name = f"{demo_name} corrupted by {corruption}"
            try:
                check_demo(demo, task, demo_name)
            except ValueError as err:
                # A corruption the acceptance rule refuses is a result (no method runs on it), not an error.
                if progress:
                    print(f"[{variant}] refused: {err}")
                demos[variant], results[variant] = {"source": demo.source, "refused": str(err)}, {}
                continue
        warnings = check_demo(demo, task, demo_name)
        if progress:
            for warning in warnings:
                print(f"[{variant}] warning: demo {demo_name}: {warning}")
        venv = make_vector_env(
            task, min(settings.n_envs, episodes), observation, render_mode=None if video is None else "rgb_array",
            localizer=models.localizer, pose_filter=pose_filter,
        )  # fmt: skip
        first, _ = venv.reset(seed=settings.seed, options=task.reset_options())
        demo = task_demo(demo, task, first["achieved_goal"][0], first["desired_goal"][0])
        try:
            mask, report = demo_mask(demo, models, config.mask)
        except ValueError as err:
            venv.close()
            raise ValueError(f"demo {demo_name}: {err}") from None
        if not bool(mask.any()):
            venv.close()
            raise ValueError(f"demo {demo_name} activates no skill token: nothing to plan with")
        anchors = report.demo_windows.to(device)
        overlap: dict[str, float] = {}
        if demo_source is not None:
            reference, _ = demo_mask(task_demo(scripted, task, first["achieved_goal"][0], first["desired_goal"][0]),
                                     models, config.mask)  # fmt: skip
            both, either = int((mask & reference).sum()), int((mask | reference).sum())
            overlap = {
                "scripted_mask_jaccard": both / max(1, either),
                "scripted_mask_recall": both / max(1, int(reference.sum())),
            }
        if progress:
            print(f"[{variant}] demo ({demo.source}, {len(demo.points)} points): {report.message}")
        masks = {
            "demo": mask,
            "all": torch.ones(num_skills, dtype=torch.bool),
            "random": random_mask(int(mask.sum()), num_skills, settings.seed),
        }
        if any(METHODS[m].mask == "oracle" for m in methods) and oracle_inputs is not None:
            masks["oracle"] = oracle_mask(task, *oracle_inputs, horizon, num_skills, settings.oracle_tolerance)
        variant_results: dict[str, Any] = {}
        try:
            for method in methods:
                spec = METHODS[method]
                method_mask = masks.get(spec.mask)
                mask_size = None if method_mask is None else int(method_mask.sum())
                controller = method_controller(
                    spec, task, models, planners, method_mask, anchors, demo, action_width(venv.single_action_space),
                    replan_every, device, settings,
                )  # fmt: skip
                draw = figures is not None and method == FIGURE_METHOD and hasattr(task, "world_to_pixel")
                filming = None
                if video is not None:
                    filming = Filming(
                        video_episodes, video_frame(task, venv, demo, controller),
                        partial(_save_video, video, f"{variant}-{method}"),
                    )  # fmt: skip
                outcomes = rollout(
                    task, venv, controller, episodes, settings.seed, progress, desc=f"{variant}/{method}",
                    record=draw, filming=filming,
                )  # fmt: skip
                if draw:
                    assert figures is not None and oracle_inputs is not None
                    title = f"{variant}: {method}"
                    if isinstance(getattr(task, "layout", None), MazeLayout):
                        if token_windows is None:  # the same source windows serve every variant's figure
                            token_windows = _token_windows(*oracle_inputs, horizon, num_skills)
                        picture = _draw_variant(task, demo, mask, outcomes, token_windows, figures / f"{variant}.png",
                                                title)  # fmt: skip
                    else:
                        picture = _draw_on_picture(task, demo, outcomes, figures / f"{variant}.png", title)
                    if progress:
                        print(f"[{variant}] wrote {picture}")
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
        if "oracle" in masks:
            oracle = masks["oracle"]
            # Precision: share of the demo's tokens that the true walls allow (1 - leakage).
            report_extra = {"demo_tokens_feasible_share": float((mask & oracle).sum() / max(1, int(mask.sum())))}
        else:
            report_extra = {}
        demos[variant] = {
            **report_extra,
            **overlap,
            "source": demo.source,
            "tokens_active": report.tokens_active,
            "in_distribution_share": report.in_distribution_share,
            "flagged": report.flagged,
            "warnings": list(warnings),
        }
        results[variant] = variant_results
    output = {
        "task": experiment.source.task,
        "config": portable_path(experiment.path),
        "overrides": list(experiment.overrides),
        "episodes": episodes,
        "observation": observation,
        "corruption": None if corruption is None else str(corruption),
        "variants": results,
        "demos": demos,
        "provenance": started,
    }
    if json_path is not None:
        write_json_atomic(output, json_path)
    if progress:
        print(results_table(output))
    return output


def experiment_provenance(experiment: Experiment, device: str | None, eval_seed: int | None = None) -> dict[str, Any]:
    """The provenance block of a result of ``experiment`` (agent/core/provenance.py): the experiment config as loaded
    (`extends:` and overrides applied) with the variant configs it names, and its seeds (``eval_seed``: the episodes'
    seed when it is not the config's eval.seed)."""
    config = experiment.config
    seeds = {"experiment": config.seed, "eval": config.eval.seed if eval_seed is None else eval_seed}
    return provenance(resolved_config(experiment), seeds, device)


def resolved_config(experiment: Experiment) -> dict[str, Any]:
    """The experiment as it ran, as plain data: its config (`extends:` and overrides applied) and the variant
    configs it names."""
    return {
        "experiment": experiment.config.model_dump(mode="json"),
        "source": experiment.source.model_dump(mode="json"),
        "targets": {variant: target.model_dump(mode="json") for variant, target in experiment.targets.items()},
    }


def video_frame(task: Task, venv: Any, demo: Demo, controller: Controller) -> Callable[[int], np.ndarray]:
    """env index -> that env's rendered frame (task.render_frame of ``venv``'s env), with the demo's route and the
    env's current plan (``controller.planned_states``) drawn over it where the task's camera is calibrated
    (perception's Scene of the task); the bare frame where it is not."""
    try:
        scene: Scene | None = Scene.from_task(task)
    except ValueError:  # e.g. a Fetch variant without a fixed goal has no route plane
        scene = None
    route = None if scene is None else scene.to_pixel(np.asarray(demo.positions))

    def frame(env: int) -> np.ndarray:
        picture = task.render_frame(venv.envs[env])
        if scene is None:
            return picture
        lines = [(route, FRAME_DEMO_RGB)]
        plan = controller.planned_states(env)
        if plan is not None:
            lines.append((scene.to_pixel(task.positions(plan)), FRAME_PLAN_RGB))
        return draw_lines(picture, lines)

    return frame


def _save_video(folder: Path, name: str, episode: int, frames: list[np.ndarray]) -> Path:
    return write_video(frames, folder / f"{name}-ep{episode}.gif")


def method_planners(models: Any, config: PlannerConfig) -> dict[str, SkillPlanner]:
    """One planner per critic kind of the method table, shared by the methods that plan with it (each planner's
    random stream runs on from one method to the next, as the results were measured)."""
    return {
        "learned": models.planner(config),
        # mask_only: a constant critic has no goal radius or prior, so the planner ranks nothing (token scoring)
        "constant": models.planner(config, ConstantCritic(models.tokenizer.codebook_size)),
    }


def check_pixel_stage(experiment: Experiment, run: Path, models: Models, observation: str) -> None:
    """Refuse pixel observations of a world with egocentric frames (the house) from a run without the localizer
    stage that reads them, naming the command that trains it."""
    if observation != "pixels" or experiment.source.task not in egocentric_families() or models.localizer is not None:
        return
    section = "" if experiment.config.localizer is not None else f"give {experiment.path} a localizer section, then "
    raise ValueError(
        f"--observation pixels: {run} has no {LOCALIZER_STAGE} stage, which turns the {experiment.source.task}'s "
        f"egocentric frames into poses: {section}run `mstt train {experiment.path} --run {run} --stages "
        f"{LOCALIZER_STAGE}`"
    )


def missing_stage(spec: EvalMethod, models: Models, variants: list[str]) -> str | None:
    """The stage a method needs that the run lacks (None when it has all it needs)."""
    if spec.needs_stage == "executor_dds" and models.dds_skills is None:
        return "dds_skills"
    if spec.needs_stage == "diffuser" and models.diffuser is None:
        return "diffuser"
    if spec.needs_stage == "dara":
        assert spec.target_share is not None
        for variant in variants:
            if models.dara_policy(variant, spec.target_share) is None:
                return dara_stage_name(variant, spec.target_share)
    return None


def method_controller(
    spec: EvalMethod, task: Task, models: Any, planners: dict[str, Any], mask: torch.Tensor | None, anchors: Any,
    demo: Demo, action_dim: int, replan_every: int, device: torch.device, settings: Any,
) -> Controller:  # fmt: skip
    """The controller that runs one method of the table in one world (`mstt eval` and `mstt run` alike)."""
    if spec.controller == "policy":
        return PolicyController(models.bc.act)
    if spec.controller == "demo_route":
        return DemoTracker(task, demo.positions, action_dim, task.config.reversible)
    if spec.controller == "dara":
        assert spec.target_share is not None
        policy = models.dara_policy(task.config.variant, spec.target_share)
        if policy is None:
            raise ValueError(f"the run has no DARA policy {dara_stage_name(task.config.variant, spec.target_share)}")
        return PolicyController(tensor_policy(policy.act))
    if spec.controller == "diffuser":
        planner = diffuser_planner(models.diffuser, settings.seed)
        every = settings.diffuser_replan_every or models.diffuser.config.horizon
        return PlanController(task, planner, torch.ones(1, dtype=torch.bool), every, device)
    assert mask is not None
    # The demo's windows refine only the masks that come from the demo (planner.match_radius).
    plan = partial(planners[spec.critic].plan, anchors=anchors if spec.demo_windows else None)
    if spec.controller == "dds_executor":
        assert models.dds_skills is not None
        return SkillExecutorController(plan, mask, models.dds_skills.to(device), settings.seed)
    return PlanController(task, plan, mask, replan_every, device, settings.replan_after_fallback)


def check_demo(demo: Demo, task: Any, name: str) -> tuple[str, ...]:
    """Refuse a demo of another task, map or world, of the wrong dimension, with points where no agent can be, or
    whose path passes through what the variant forbids or across a wall into another corridor (``task.check_path``).
    Returns the warnings of an accepted path (corners it clips, zone edges it grazes)."""
    config = task.config
    world = config.world or config.variant
    if (demo.task, demo.name, demo.variant) != (config.task, config.name, world):
        raise ValueError(
            f"demo {name} is a demo of the {demo.task} task '{demo.name}', variant '{demo.variant}', but the target is "
            f"the {config.task} task '{config.name}' in world '{world}' (variant {config.variant})"
        )
    points = np.asarray(demo.positions, dtype=float)
    if points.shape[1] != task.pos_dim:
        raise ValueError(f"demo {name} has {points.shape[1]}-D points; positions of this task are {task.pos_dim}-D")
    outside = task.outside(points)
    if outside.any():
        first = int(np.argmax(outside))
        raise ValueError(
            f"demo {name}: {int(outside.sum())} of {len(points)} points lie where no agent can be (off the map, in a "
            f"wall or off the workspace), the first is point {first} = {points[first].round(3).tolist()}"
        )
    check = task.check_path(points, demo.breaks)
    if check.refusal is not None:
        raise ValueError(f"demo {name}: {check.refusal}")
    return check.warnings


DEMO_INSTRUCTION = "go to the red ball"
"""What a perception backend is asked when `mstt eval --demo-source` reads the demos off the pictures."""


def demo_mask(demo: Demo, models: Any, config: Any) -> tuple[torch.Tensor, Any]:
    """(L,) bool mask on the CPU and the mask report of one demo, as every command reads a demo: the union over the
    unbroken pieces of its route."""
    mask, report = infer_route_mask(demo.pieces(), models.tokenizer, config, models.stats.step_length, models.stats.dt)
    return mask.cpu(), report


def task_demo(demo: Demo, task: Task, start: np.ndarray, goal: np.ndarray) -> Demo:
    """The demo as this task uses it: walked backwards when the task's goal lies behind its start along the route and
    the task's motions reverse (``reversible``). Reading both directions at once widens the mask; measured on the maze,
    it let the planner (and a constant critic far more) turn back along the route (results/demo-follow/)."""
    return demo.oriented(start, goal) if task.config.reversible else demo


def perceived_demo(task: Any, backend: str, out: Path | None, backend_config: dict[str, Any] | None = None) -> Demo:
    """The variant's demo as a perception backend reads it off the rendered start frame (seed 0).

    The demo and its overlay PNG go to ``out`` (named after the variant) when given."""

    frame = start_frame(task)
    scene = Scene.from_task(task).observe(frame)
    perceiver = make_perceiver(backend, backend_config or {})
    demo = perceiver.perceive(frame, DEMO_INSTRUCTION, scene)
    if out is not None:
        variant = task.config.variant
        demo.save(out / f"demo_{backend}_{variant}.json")
        draw_demo(frame, demo, scene, out / f"demo_{backend}_{variant}.png")
    return demo


FIGURE_METHOD = "mstt"
"""Whose episodes the per-variant figure draws."""
FIGURE_MAX_PATHS = 20
FIGURE_WINDOW_STRIDE = 4
"""Stride of the source windows averaged into each token's drawn mean window."""


def _token_windows(positions: list[np.ndarray], tokens: list[np.ndarray], horizon: int, num_skills: int) -> np.ndarray:
    """(L, H, P) mean source window of every token (from every FIGURE_WINDOW_STRIDE-th window)."""

    windows = np.concatenate([position_windows(p, horizon, 1)[: len(t)][::FIGURE_WINDOW_STRIDE] for p, t in
                              zip(positions, tokens)])  # fmt: skip
    window_tokens = np.concatenate([t[::FIGURE_WINDOW_STRIDE] for t in tokens])
    return token_mean_windows(windows, window_tokens, num_skills)


def _draw_variant(
    task: Any, demo: Demo, mask: torch.Tensor, outcomes: list[Any], token_windows: np.ndarray, path: Path,
    title: str,
) -> Path:  # fmt: skip

    num_skills = token_windows.shape[0]
    shown = outcomes[:FIGURE_MAX_PATHS]
    rate = sum(o.success for o in outcomes) / max(1, len(outcomes))
    return maze_transfer_figure(
        task.layout,
        path,
        demo=np.asarray(demo.positions),
        token_windows=token_windows,
        mask=mask.numpy(),
        trajectories=[o.path for o in shown if o.path is not None],
        successes=[o.success for o in shown],
        title=f"{title} (goal rate {rate:.0%}, {int(mask.sum())} of {num_skills} skills kept)",
    )


def start_frame(task: Any) -> np.ndarray:
    """(H, W, 3) uint8: the variant's picture at its start (reset with seed 0), as perception and figures see it."""
    env = task.make_env(render_mode="rgb_array")
    try:
        env.reset(seed=0, options=task.reset_options())
        return np.asarray(task.render_frame(env))
    finally:
        env.close()


def _draw_on_picture(task: Any, demo: Demo, outcomes: list[Any], path: Path, title: str) -> Path:
    """The variant's own picture at its start (the house's map), with the demo and the first FIGURE_MAX_PATHS paths."""
    picture = start_frame(task)
    shown = outcomes[:FIGURE_MAX_PATHS]
    rate = sum(o.success for o in outcomes) / max(1, len(outcomes))
    return picture_transfer_figure(
        picture, task.world_to_pixel, path, demo=np.asarray(demo.positions),
        trajectories=[o.path for o in shown if o.path is not None], successes=[o.success for o in shown],
        title=f"{title} (goal rate {rate:.0%})",
    )  # fmt: skip


def results_table(output: dict[str, Any]) -> str:
    """The results JSON as a plain-text table, one row per variant and method."""
    header = f"{'variant':8s} {'method':12s} {'goal':>6s} {'95% CI':>13s} {'return':>8s} {'failure':>8s} " \
             f"{'cost':>7s} {'steps':>6s} {'mask':>5s}"  # fmt: skip
    lines = [header, "-" * len(header)]
    for variant, methods in output["variants"].items():
        for method, r in methods.items():
            lo, hi = r["goal_ci95"]
            steps = "-" if r["steps_mean"] is None else f"{r['steps_mean']:.0f}"
            mask = "-" if r["mask_size"] is None else str(r["mask_size"])
            lines.append(
                f"{variant:8s} {method:12s} {r['goal_rate']:6.1%} [{lo:4.2f}, {hi:4.2f}] {r['return_mean']:8.1f} "
                f"{r['failure_rate']:8.1%} {r['cost_mean']:7.1f} {steps:>6s} {mask:>5s}"
            )
    return "\n".join(lines)
