"""Probe (results/house/COMMAND.md): once the plan being tracked passes within the goal's radius and the goal is within
the tracker's lookahead, steer at the goal itself instead of the plan's farthest point within the lookahead (which may
lie beyond the goal). Patches HouseTask.track_plan and PlanController.act as they were at 8632cc1 (from c8ce360 on,
HouseTask.track_plan does this itself and takes the goal), for one variant, GPS + compass;
the baseline is goal_fallback.py's `--baseline` run. Run from the repository root:

    python results/house/tried/goal_aim.py CONFIG RUN SEED VARIANT EPISODES OUT.json [--pixels]

(--pixels: from egocentric frames, with configs/house/pixels.yaml as CONFIG.)
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import mstt.agent.experiments.evaluate as ev
from mstt.agent.core.config import command_line_overrides
from mstt.agent.experiments.controllers import PlanController
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.worlds.house import GOAL_RADIUS, N_ACTIONS, PLAN_LOOKAHEAD, HouseTask

cfg, run, seed, variant, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
exp = load_experiment(Path(cfg), command_line_overrides(cfg, seed if seed else None, [], None))
exp = replace(exp, targets={variant: exp.targets[variant]})
goals: list[np.ndarray] = []
orig_act, orig_track_plan = PlanController.act, HouseTask.track_plan


def act(self, obs):
    goals[:] = [np.asarray(obs["desired_goal"])[:, :2]]
    return orig_act(self, obs)


def track_plan(self, obs, plan, k):
    actions = orig_track_plan(self, obs, plan, k)
    goal = goals[0]
    passes = (np.linalg.norm(plan[:, :, :2] - goal[:, None], axis=-1) <= GOAL_RADIUS).any(axis=1)
    offset = goal - obs[:, :2]
    near = np.linalg.norm(offset, axis=1) <= PLAN_LOOKAHEAD
    heading = np.arctan2(offset[:, 1], offset[:, 0])
    target = np.column_stack([goal, np.cos(heading), np.sin(heading)])
    to_goal = self.track(obs, target, np.zeros((len(obs), N_ACTIONS)))
    return np.where(passes & near, to_goal, actions)


PlanController.act, HouseTask.track_plan = act, track_plan
start = time.time()
observation = "pixels" if "--pixels" in sys.argv else None
ev.evaluate_transfer(
    exp, Path(run), episodes=n, methods=["mstt"], progress=False, json_path=Path(out), observation=observation
)
record = json.loads(Path(out).read_text())
record["probe"] = {"seconds": time.time() - start, "patch": "track_plan aims at the goal once the plan passes it"}
Path(out).write_text(json.dumps(record, indent=2))
print(record["variants"][variant]["mstt"])
