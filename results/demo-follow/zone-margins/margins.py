"""How deep each Fetch episode's gripper path goes into the forbidden zone, and where (issue 19's diagnosis of the
straight-chord demos). Runs ``mstt eval`` with every episode's path recorded and writes, beside the eval JSON, the
signed distance of each path's deepest point to the zone (`Zone.depth`): positive inside (the depth to the nearest
face), negative outside (the distance to the box).

    python results/demo-follow/zone-margins/margins.py DEMO METHOD EPISODES   # DEMO: clean or a corruption
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import mstt.agent.experiments.evaluate as evaluate
from mstt.agent.cli import main
from mstt.agent.worlds import load_config
from mstt.skills.windows import arc_lengths, points_at_arc

HERE = Path(__file__).parent
CONFIG, ZONE_CONFIG, RUN = "configs/fetch/mstt.yaml", "configs/fetch/zone.yaml", "runs/fetch"


def run(demo: str, method: str, episodes: int) -> dict:
    paths: list[np.ndarray] = []
    routes: list[np.ndarray] = []
    play, placed = evaluate.rollout, evaluate.task_demo

    def kept(*args, **kwargs):  # the demo as the methods read it, placed at the episode's start and goal
        demo = placed(*args, **kwargs)
        routes.append(np.asarray(demo.positions, dtype=float))
        return demo

    def recorded(*args, **kwargs):  # the eval's own rollout, with the paths kept
        outcomes = play(*args, **{**kwargs, "record": True})
        paths.extend(np.asarray(o.path)[:, :3] for o in outcomes)
        return outcomes

    evaluate.rollout, evaluate.task_demo = recorded, kept
    out = HERE / f"fetch-{demo}-{method}.json"
    args = ["eval", CONFIG, "--run", RUN, "--episodes", str(episodes), "--methods", method, "--quiet", "--json", str(out)]
    main(args + ([] if demo == "clean" else ["--corrupt", demo]))
    (zone,) = load_config(ZONE_CONFIG).zones
    depth = [zone.depth(p) for p in paths]
    deepest = np.array([d.max() for d in depth])
    where = np.array([p[d.argmax()] for p, d in zip(paths, depth)])
    route = routes[-1]
    dense = points_at_arc(route, np.linspace(0.0, arc_lengths(route)[-1], 2000))  # every 0.1 mm or so
    return {
        "demo": demo, "method": method, "episodes": len(paths), "entered": float(np.mean(deepest > 0)),
        "deepest_cm": {"median": 100 * float(np.median(deepest)), "min": 100 * float(deepest.min()),
                       "max": 100 * float(deepest.max())},
        "demo_deepest_cm": 100 * float(zone.depth(dense).max()),
        "entry_points": where[deepest > 0].round(3).tolist(),
    }  # fmt: skip


if __name__ == "__main__":
    summary = run(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    target = HERE / f"margins-{summary['demo']}-{summary['method']}.json"
    target.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['demo']} {summary['method']}: entered {summary['entered']:.0%}, deepest (cm) {summary['deepest_cm']}, "
          f"demo's deepest (cm) {summary['demo_deepest_cm']:.2f}")
