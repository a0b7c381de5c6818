"""How deep each Fetch episode's gripper path goes into the forbidden zone, and where (issue 19's diagnosis of the
straight-chord demos). Runs ``mstt eval`` with every episode's path recorded and writes, beside the eval JSON, the
signed distance of each path's deepest point to the zone: positive inside (the depth to the nearest face), negative
outside (the distance to the box).

    python results/demo-follow/zone-margins/margins.py DEMO METHOD EPISODES   # DEMO: clean or a corruption
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

import mstt.agent.experiments.evaluate as evaluate
from mstt.agent.cli import main
from mstt.skills.windows import arc_lengths, points_at_arc

HERE = Path(__file__).parent
CONFIG, ZONE_CONFIG, RUN = "configs/fetch/mstt.yaml", "configs/fetch/zone.yaml", "runs/fetch"


def signed_depth(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(T, 3) positions -> (T,) depth inside the box (> 0) or minus the distance to it (<= 0)."""
    inside = np.minimum(points - low, high - points).min(axis=-1)
    outside = np.linalg.norm(np.maximum(0.0, np.maximum(low - points, points - high)), axis=-1)
    return np.where(inside > 0, inside, -outside)


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
    (zone,) = yaml.safe_load(Path(ZONE_CONFIG).read_text())["zones"]
    low, high = np.asarray(zone["low"]), np.asarray(zone["high"])
    depth = [signed_depth(p, low, high) for p in paths]
    deepest = np.array([d.max() for d in depth])
    where = np.array([p[d.argmax()] for p, d in zip(paths, depth)])
    route = routes[-1]
    dense = points_at_arc(route, np.linspace(0.0, arc_lengths(route)[-1], 2000))  # every 0.1 mm or so
    return {
        "demo": demo, "method": method, "episodes": len(paths), "entered": float(np.mean(deepest > 0)),
        "deepest_cm": {"median": 100 * float(np.median(deepest)), "min": 100 * float(deepest.min()),
                       "max": 100 * float(deepest.max())},
        "demo_deepest_cm": 100 * float(signed_depth(dense, low, high).max()),
        "entry_points": where[deepest > 0].round(3).tolist(),
    }  # fmt: skip


if __name__ == "__main__":
    summary = run(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    target = HERE / f"margins-{summary['demo']}-{summary['method']}.json"
    target.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['demo']} {summary['method']}: entered {summary['entered']:.0%}, deepest (cm) {summary['deepest_cm']}, "
          f"demo's deepest (cm) {summary['demo_deepest_cm']:.2f}")
