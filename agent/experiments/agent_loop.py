"""`mstt run "INSTRUCTION"`: the agent end to end in one changed world — picture -> demo (perception)
-> skill mask -> goal from words -> plan and act with the offline-trained skills -> report + video.
A task that shows the agent its own view (the house) gets that view beside the map in the video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mstt.agent.core.demo import Demo
from mstt.agent.core.io import portable_path, write_json_atomic
from mstt.agent.experiments.controllers import Video, action_width, make_vector_env, play_episodes, write_video
from mstt.agent.experiments.evaluate import (
    check_demo,
    demo_mask,
    experiment_provenance,
    method_controller,
    method_planners,
    task_demo,
    video_frame,
)
from mstt.agent.experiments.experiment import Experiment
from mstt.agent.experiments.methods import AGENT_POLICIES, METHODS
from mstt.agent.experiments.pixels import EgocentricView
from mstt.agent.experiments.train import check_run_matches, load_models
from mstt.agent.worlds import make_task
from mstt.perception import Scene, draw_demo, make_perceiver, parse_goal


@dataclass(frozen=True)
class RunReport:
    instruction: str
    variant: str
    perception: str
    policy: str
    goal: str
    goal_position: list[float]
    success: bool
    steps_to_goal: int | None
    failed: bool
    """Touched a blocked cell, a zone of the variant, or a box the instruction said to avoid."""
    cost: float
    mask_size: int
    demo_points: int
    demo_file: str
    overlay_png: str | None
    video: str


def side_by_side(view: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """(h, w, 3) view scaled (nearest pixel) to the (H, W, 3) picture's height and put on its left: (H, W', 3)."""
    height = picture.shape[0]
    width = round(view.shape[1] * height / view.shape[0])
    rows = np.arange(height) * view.shape[0] // height
    cols = np.arange(width) * view.shape[1] // width
    return np.concatenate([view[rows][:, cols], picture], axis=1)


def _episode_frame(task: Any, env: gym.Env, picture: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """() -> one video frame: the map with demo and plan, beside the agent's own view where the task has one."""
    if not isinstance(task, EgocentricView):
        return picture
    return lambda: side_by_side(task.render_egocentric(env), picture())


def _batch(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value[None] for key, value in obs.items()}


def _in_folder(path: Path, folder: Path) -> str:
    """How report.json names a file it lists: relative to its own folder (all of them lie there), else portably."""
    try:
        return path.absolute().relative_to(folder.absolute()).as_posix()
    except ValueError:
        return portable_path(path)


def run_instruction(
    experiment: Experiment,
    run: Path,
    instruction: str,
    out: Path,
    variant: str | None = None,
    perception: str = "geometric",
    perception_config: dict[str, Any] | None = None,
    seed: int = 0,
    policy: str = "mstt",
    demo_file: Path | None = None,
) -> RunReport:
    """``policy``: an eval method that acts on the demo alone (mstt, mask_only, demo_tracker; agent/methods.py).
    ``demo_file``: one demo of this world reused for any instruction, instead of reading one off the picture."""

    if policy not in AGENT_POLICIES:
        raise ValueError(f"--policy {policy!r}: choose one of {list(AGENT_POLICIES)}")
    spec = METHODS[policy]

    variant = variant or next(iter(experiment.targets))
    if variant not in experiment.targets:
        raise ValueError(f"variant {variant!r} is not a target of {experiment.path}: {sorted(experiment.targets)}")
    task = make_task(experiment.targets[variant])
    check_run_matches(run, experiment)
    models = load_models(run)
    out.mkdir(parents=True, exist_ok=True)
    venv = make_vector_env(task, 1, render_mode="rgb_array")
    env = venv.envs[0]
    try:
        venv.reset(seed=seed, options=task.reset_options())
        frame = task.render_frame(env)
        scene = Scene.from_task(task).observe(frame)
        goal = parse_goal(instruction, scene)
        task.set_goal(env, goal.target)
        obs = task.observation(env)
        frame = task.render_frame(env)

        if demo_file is not None:
            demo: Demo = Demo.load(demo_file)
            overlay = draw_demo(frame, demo, scene, out / "demo_overlay.png")
        else:
            perceiver = make_perceiver(perception, {**(perception_config or {}), "overlay_dir": str(out)})
            # One picture: the backend draws its route (accepted or refused) into out/.
            demo = perceiver.perceive(frame, instruction, scene)
            overlay = perceiver.last_overlay or draw_demo(frame, demo, scene, out / "demo_overlay.png")
        for warning in check_demo(demo, task, str(demo_file or "the perceived demo")):
            print(f"demo warning: {warning}")
        saved_demo = demo.save(out / "demo.json")

        oriented = task_demo(demo, task, obs["achieved_goal"], goal.target)
        mask, report = demo_mask(oriented, models, experiment.config.mask)
        print(f"demo: {report.message}")
        device = models.generator.device
        controller = method_controller(
            spec, task, models, method_planners(models, experiment.config.planner), {"demo": mask}.get(spec.mask),
            report.demo_windows.to(device), demo, action_width(venv.single_action_space),
            experiment.config.eval.replan_every or models.tokenizer.horizon, device, experiment.config.eval,
        )  # fmt: skip
        avoid = list(goal.avoid)

        def violation(positions: np.ndarray) -> np.ndarray:
            """(1, P) -> (1,): what the variant forbids, or a box the instruction said to avoid."""
            bad = task.violation(positions)
            for box in avoid:
                bad = bad | box.contains(positions)
            return bad

        video = Video(_episode_frame(task, env, partial(video_frame(task, venv, oriented, controller), 0)))
        [outcome] = play_episodes(task, venv, controller, _batch(obs), {}, violation=violation, videos=[video])
    finally:
        venv.close()
    gif = write_video(video.frames, out / "episode.gif")
    result = RunReport(
        instruction=instruction,
        variant=variant,
        perception=perception if demo_file is None else "demo file",
        policy=policy,
        goal=goal.label,
        goal_position=[float(v) for v in goal.position],
        success=outcome.success,
        steps_to_goal=outcome.steps_to_goal,
        failed=outcome.failed,
        cost=outcome.cost,
        mask_size=int(mask.sum()),
        demo_points=len(demo.points),
        demo_file=str(saved_demo),
        overlay_png=str(overlay) if overlay else None,
        video=str(gif),
    )
    # paths relative to the report's folder; the provenance's eval seed is the episode's
    files = {"demo_file": saved_demo, "overlay_png": overlay, "video": gif}
    written = {key: None if path is None else _in_folder(Path(path), out) for key, path in files.items()}
    provenance = experiment_provenance(experiment, str(device), eval_seed=seed)
    write_json_atomic({**asdict(result), **written, "provenance": provenance}, out / "report.json")
    return result
