"""Prints the markdown tables of COMMAND.md from this folder's JSONs (any Python 3, no third-party packages)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS = HERE.parent / "offline-rl"
METHODS = {"d3rlpy_iql": "d3rlpy IQL (matched)", "d3rlpy_bc": "d3rlpy BC (matched)", "iql": "our IQL"}


def cell(values: list[float], scale: float = 1.0) -> str:
    shown = " / ".join(f"{v * scale:.1f}" for v in values)
    spread = f"{statistics.mean(values) * scale:.1f} ± {statistics.stdev(values) * scale:.1f}" if len(values) > 1 else "-"
    return f"{shown} | {spread}"


def main() -> None:
    runs = {s: json.loads(p.read_text()) for s in range(3) if (p := HERE / f"large-seed{s}.json").exists()}
    print(f"seeds: {sorted(runs)}\n")
    print("| method | success %, per seed | success %, mean ± std | D4RL score, per seed | score, mean ± std |")
    print("|---|---|---|---|---|")
    for key, name in METHODS.items():
        rates = [r["methods"][key]["success_rate"] for r in runs.values() if key in r["methods"]]
        scores = [r["methods"][key]["normalised_score"] for r in runs.values() if key in r["methods"]]
        print(f"| {name} | {cell(rates, 100)} | {cell(scores)} |")
    default = HERE / "large-seed0-d3rlpy-default.json"
    if default.exists():
        m = json.loads(default.read_text())["methods"]["d3rlpy_iql"]
        print(f"| d3rlpy IQL (d3rlpy defaults), seed 0 | {100 * m['success_rate']:.1f} | - | "
              f"{m['normalised_score']:.1f} | - |")  # fmt: skip
    for seed in (1, 2):
        path = OURS / f"large-seed{seed}.json"
        if path.exists():
            m = json.loads(path.read_text())["methods"]
            print(f"reference {path.name}: " + ", ".join(
                f"{k} {100 * v['success_rate']:.0f}% / {v['normalised_score']:.1f}" for k, v in m.items()))
    print("\n| seed | d3rlpy IQL train s (steps/s) | d3rlpy BC train s (steps/s) | our IQL train s (steps/s) |")
    print("|---|---|---|---|")
    for s, r in runs.items():
        row = []
        for algo in ("iql", "bc"):
            p = HERE / f"d3rlpy-{algo}-seed{s}.json"
            d = json.loads(p.read_text()) if p.exists() else None
            row.append(f"{d['seconds']:.0f} ({d['steps_per_s']:.0f})" if d else "-")
        ours = r["training"].get("iql")
        row.append(f"{ours['seconds']:.0f} ({ours['steps'] / ours['seconds']:.0f})" if ours else "-")
        print(f"| {s} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
