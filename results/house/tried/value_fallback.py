"""Tried and dropped (results/house/COMMAND.md): a fallback that takes the candidate whose end state the critic values
most (its depth-1 lookahead), ties broken by the distance to the demo. Patches SkillPlanner at this commit (6fbb7db)
for one variant; run from the repository root:

    python results/house/tried/value_fallback.py configs/house/mstt.yaml runs/house zone 50 0 /tmp/zone-paths.npy
"""

import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import mstt.agent.experiments.evaluate as ev
from mstt.agent.experiments.experiment import load_experiment
from mstt.skills.critic import ConstantCritic
from mstt.skills.planner import SkillPlanner

cfg, run, variant, n, lam = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
exp = load_experiment(Path(cfg))
exp = replace(exp, targets={variant: exp.targets[variant]})
orig_plan = SkillPlanner.plan


def plan(self, states, masks, goals=None, anchors=None):
    self._goals = goals.to(self.device) if goals is not None else None
    return orig_plan(self, states, masks, goals, anchors)


SkillPlanner.plan = plan
orig_fb = SkillPlanner.fallback


def fallback(self, candidates, masks, to_demo=None, states=None, anchors=None):
    base = orig_fb(self, candidates, masks, to_demo, states, anchors)
    if to_demo is None or isinstance(self.critic, ConstantCritic):
        return base
    lv = self._lookahead(candidates, masks, self._goals, 1)
    if lam > 0:
        return (lv - lam * to_demo).argmax(dim=1)
    best = lv.amax(dim=1, keepdim=True)
    tied = lv >= best - 1e-6
    return to_demo.masked_fill(~tied, math.inf).argmin(dim=1)


SkillPlanner.fallback = fallback
store = {}
orig = ev.rollout


def rec(task, venv, controller, episodes, seed, progress=False, desc="", record=False, filming=None):
    o = orig(task, venv, controller, episodes, seed, progress, desc, True, filming)
    store[desc] = (o, controller)
    return o


ev.rollout = rec
t = time.time()
ev.evaluate_transfer(exp, Path(run), episodes=n, methods=["mstt"], progress=False)
o, c = store[f"{variant}/mstt"]
print(
    "time",
    time.time() - t,
    "goal",
    np.mean([x.success for x in o]),
    "fail",
    np.mean([x.failed for x in o]),
    "cost",
    np.mean([x.cost for x in o]),
    "steps",
    np.mean([x.steps_to_goal for x in o if x.steps_to_goal]),
    "fb",
    c.fallback_rate,
)
np.save(sys.argv[6], np.array([x.path for x in o], dtype=object), allow_pickle=True)
for i, x in enumerate(o):
    if x.failed or not x.success:
        print(i, x.success, x.failed, x.cost)
