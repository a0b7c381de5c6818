"""The house's body-touches-an-obstacle test (HouseTask.bumps), which the pose filter calls on its 500 particles
two to three times per step: the previous formula (distance to each wall segment by projection, then to each box)
against the current one (every wall and box as an axis-aligned rectangle, x and z handled apart), side by side in
one run. Both give the same answer on every point drawn; the script checks that before timing.

    OMP_NUM_THREADS=1 .venv/bin/python results/house/speed/bench_bumps.py --json results/house/speed/bumps.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date

import numpy as np

from mstt.agent.core.house_layout import AGENT_RADIUS, point_segment_distance
from mstt.agent.worlds import load_config, make_task


def previous_bumps(layout, positions: np.ndarray) -> np.ndarray:
    """The formula HouseTask.bumps used before (commit f991bf3)."""
    near = point_segment_distance(positions, layout.walls[:, 0], layout.walls[:, 1]).min(-1, initial=np.inf)
    bumped = near < AGENT_RADIUS
    if len(layout.boxes):
        below = layout.boxes[None, :, :2] - positions[:, None]
        above = positions[:, None] - layout.boxes[None, :, 2:]
        gap = np.maximum(np.maximum(below, above), 0.0)
        bumped |= (np.linalg.norm(gap, axis=-1) < AGENT_RADIUS).any(-1)
    return bumped


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=500, help="points per call (the filter's particles)")
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = {}
    for variant in ("blocked", "zone", "holdout"):
        task = make_task(load_config(f"configs/house/{variant}.yaml"))
        rng = np.random.default_rng(0)
        x0, z0, x1, z1 = task.extent
        check = rng.uniform((x0, z0), (x1, z1), (200_000, 2))
        disagree = int((previous_bumps(task.layout, check) != task.bumps(check, slack=0.0)).sum())
        points = check[: args.points]
        before = median_ms(lambda: previous_bumps(task.layout, points), args.repeats)
        after = median_ms(lambda: task.bumps(points, slack=0.0), args.repeats)
        rows[variant] = {"previous_ms": before, "current_ms": after, "speed_up": before / after,
                         "disagreements_in_200k_points": disagree}  # fmt: skip
        print(f"{variant:8s} previous {before:.3f} ms  current {after:.3f} ms  x{before / after:.1f}  "
              f"disagreements {disagree} of 200,000")  # fmt: skip
    if args.json:
        record = {"benchmark": "house bumps, 500 particles per call", "date": date.today().isoformat(),
                  "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, one thread",
                  "points": args.points, "repeats": args.repeats, "variants": rows}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
