"""`mstt run "INSTRUCTION"`: the agent end to end in one changed world — picture -> demo (perception)
-> skill mask -> goal from words -> plan and act with the offline-trained skills -> report + video.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch

from mstt.agent.core.demo import Demo
from mstt.agent.experiments.controllers import ConstantCritic, DemoTracker, PlanController
from mstt.agent.experiments.experiment import Experiment
from mstt.agent.core.io import write_json_atomic
from mstt.agent.worlds import make_task
from mstt.agent.experiments.train import check_run_matches, load_models
from mstt.agent.experiments.methods import AGENT_POLICIES, METHODS
from mstt.agent.experiments.evaluate import check_demo, demo_mask, task_demo
from mstt.perception import Scene, draw_demo, make_perceiver, parse_goal

VIDEO_EVERY = 4
"""Record every k-th step in the GIF (the full frame rate makes large files and adds nothing)."""
VIDEO_FPS = 25


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


def _batch(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value[None] for key, value in obs.items()}


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
    env = task.make_env(render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed, options=task.reset_options())
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

        mask, report = demo_mask(task_demo(demo, task, obs["achieved_goal"], goal.target), models, experiment.config.mask)
        print(f"demo: {report.message}")
        controller: Any
        if spec.controller == "demo_route":
            controller = DemoTracker(task, demo.positions, env.action_space.shape[0], task.config.reversible)
        else:
            critic = ConstantCritic(models.tokenizer.codebook_size) if spec.critic == "constant" else None
            planner = models.planner(experiment.config.planner, critic)
            replan_every = experiment.config.eval.replan_every or models.tokenizer.horizon
            anchors = report.demo_windows.to(planner.device)  # the demo's windows: planner.match_radius
            plan = partial(planner.plan, anchors=anchors)
            controller = PlanController(
                task, plan, mask, replan_every, torch.device("cpu"), experiment.config.eval.replan_after_fallback
            )
        batch = _batch(obs)
        controller.reset(batch)
        frames, success, first, failed, cost = [frame], False, None, False, 0.0
        avoid = list(goal.avoid)
        for t in range(task.config.episode_steps):
            obs, _, _, _, info = env.step(controller.act(batch)[0])
            batch = _batch(obs)
            position = obs["achieved_goal"]
            bad = bool(task.violation(position[None])[0]) or any(bool(box.contains(position)[0]) for box in avoid)
            failed |= bad
            cost += bad
            if info[task.success_key] and not success:
                success, first = True, t + 1
            if t % VIDEO_EVERY == 0:
                frames.append(task.render_frame(env))
    finally:
        env.close()
    video = out / "episode.gif"
    imageio.mimsave(video, frames, duration=1000 / VIDEO_FPS, loop=0)
    result = RunReport(
        instruction=instruction,
        variant=variant,
        perception=perception if demo_file is None else "demo file",
        policy=policy,
        goal=goal.label,
        goal_position=[float(v) for v in goal.position],
        success=success,
        steps_to_goal=first,
        failed=failed,
        cost=cost,
        mask_size=int(mask.sum()),
        demo_points=len(demo.points),
        demo_file=str(saved_demo),
        overlay_png=str(overlay) if overlay else None,
        video=str(video),
    )
    write_json_atomic(asdict(result), out / "report.json")
    return result
