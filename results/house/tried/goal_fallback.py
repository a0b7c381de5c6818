"""Probe (results/house/COMMAND.md): when a decision falls back (no candidate passed the mask and the demo match),
take a candidate that reaches the goal if one does (the one nearest the demo among them), else the fallback as it
is. Patches SkillPlanner at this commit for one variant, GPS + compass; run from the repository root:

    python results/house/tried/goal_fallback.py CONFIG RUN SEED VARIANT EPISODES OUT.json [--baseline]

(--baseline: the same script without the patch, for a baseline on the same random streams.)
"""

import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import mstt.agent.experiments.evaluate as ev
from mstt.agent.core.config import command_line_overrides
from mstt.agent.experiments.experiment import load_experiment
from mstt.skills.planner import SkillPlanner

cfg, run, seed, variant, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
exp = load_experiment(Path(cfg), command_line_overrides(cfg, seed if seed else None, [], None))
exp = replace(exp, targets={variant: exp.targets[variant]})
orig_plan, orig_fallback = SkillPlanner.plan, SkillPlanner.fallback


def plan(self, states, masks, goals=None, anchors=None):
    self._goals = goals.to(self.device) if goals is not None else None
    return orig_plan(self, states, masks, goals, anchors)


def fallback(self, candidates, masks, to_demo=None, states=None, anchors=None):
    base = orig_fallback(self, candidates, masks, to_demo, states, anchors)
    if self._goals is None or to_demo is None:
        return base
    reaches = self._reaches_goal(candidates, self._goals)  # (E, N)
    toward = to_demo.masked_fill(~reaches, math.inf).argmin(dim=1)
    return torch.where(reaches.any(dim=1), toward, base)


if "--baseline" not in sys.argv:
    SkillPlanner.plan, SkillPlanner.fallback = plan, fallback
start = time.time()
ev.evaluate_transfer(exp, Path(run), episodes=n, methods=["mstt"], progress=False, json_path=Path(out))
record = json.loads(Path(out).read_text())
record["probe"] = {"seconds": time.time() - start, "patch": "--baseline" not in sys.argv}
Path(out).write_text(json.dumps(record, indent=2))
print(record["variants"][variant]["mstt"])
