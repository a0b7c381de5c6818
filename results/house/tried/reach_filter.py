"""Tried and dropped (results/house/COMMAND.md): a planner filter that drops candidates leaving the cells the source
data visited, and a fallback that prefers candidates with fewer points outside them. Patches SkillPlanner at this
commit (6fbb7db) for one variant; run from the repository root:

    python results/house/tried/reach_filter.py configs/house/mstt.yaml runs/house zone 50 0.1 1 /tmp/zone-paths.npy
"""

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import mstt.agent.experiments.evaluate as ev
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.train import source_data
from mstt.skills.planner import SkillPlanner

cfg, run, variant, n, cell, dil = (
    sys.argv[1],
    sys.argv[2],
    sys.argv[3],
    int(sys.argv[4]),
    float(sys.argv[5]),
    int(sys.argv[6]),
)
exp = load_experiment(Path(cfg))
exp = replace(exp, targets={variant: exp.targets[variant]})
task, eps = source_data(exp, False)
P = np.concatenate([task.positions(e.observations) for e in eps])
lo = P.min(0) - cell * (dil + 1)
idx = np.floor((P - lo) / cell).astype(int)
shape = idx.max(0) + dil + 2
g = torch.zeros(tuple(shape))
g[tuple(idx.T)] = 1
g = F.max_pool2d(g[None, None], 2 * dil + 1, 1, dil)[0, 0].bool()
print("grid", g.shape, float(g.float().mean()))
LO = torch.tensor(lo, dtype=torch.float32)


def outside(pos):  # (..., P) -> (...) count
    i = torch.floor((pos - LO) / cell).long()
    ok = ((i >= 0) & (i < torch.tensor(g.shape))).all(-1)
    i = i.clamp(min=torch.zeros(2, dtype=torch.long), max=torch.tensor(g.shape) - 1)
    return ~(ok & g[i[..., 0], i[..., 1]])


orig_perm = SkillPlanner._permitted


def _permitted(self, candidates, tokens, masks, anchors):
    p, d = orig_perm(self, candidates, tokens, masks, anchors)
    out = outside(candidates[..., :2].float()).sum(-1)  # (E,N)
    p = p & (out == 0)
    if d is not None:
        d = d + 100.0 * out  # fallback: fewest points out of reach first, then nearest the demo
    return p, d


SkillPlanner._permitted = _permitted
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
    "coll",
    np.mean([x.collisions for x in o]),
)
np.save(sys.argv[7], np.array([x.path for x in o], dtype=object), allow_pickle=True)
for i, x in enumerate(o):
    if x.failed or not x.success:
        print(i, x.success, x.failed, x.cost)
