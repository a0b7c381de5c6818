# MSTT on the maze with pure pursuit along the plan's path (the house's execution) instead of PD to the plan's next state
import sys, json, numpy as np
from pathlib import Path
from mstt.agent.worlds.maze import MazeTask
import mstt.agent.experiments.evaluate as ev
from mstt.agent.experiments.experiment import load_experiment
LOOK = float(sys.argv[1]); replan = int(sys.argv[2]); out = sys.argv[3]; eps = int(sys.argv[4])
def track_plan(self, obs, plan, k, goal=None):  # PlanController also hands the goal (since c8ce360)
    positions = plan[:, :, :2]
    gap = np.linalg.norm(positions - obs[:, None, :2], axis=-1)
    nearest = gap.argmin(axis=1)
    steps = np.arange(plan.shape[1])
    reach = (steps[None] >= nearest[:, None]) & (gap <= LOOK)
    aim = np.where(reach, steps[None], -1).max(axis=1)
    aim = np.where(aim < 0, nearest, aim)
    nxt = np.zeros_like(obs); nxt[:, :2] = plan[np.arange(len(obs)), aim, :2]
    return self.track(obs, nxt, None)
MazeTask.track_plan = track_plan
exp = load_experiment(Path('configs/maze/mstt.yaml'))
from dataclasses import replace
exp = replace(exp, config=exp.config.model_copy(update={'eval': exp.config.eval.model_copy(update={'replan_every': replan})}))
r = ev.evaluate_transfer(exp, Path('runs/maze'), episodes=eps, methods=['mstt'], progress=False, json_path=Path(out))
for v, m in r['variants'].items(): print(v, {k: (x['goal_rate'], x['failure_rate'], x['steps_mean'], x['fallback_rate']) for k, x in m.items() if isinstance(x, dict)})
