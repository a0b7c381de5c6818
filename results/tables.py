"""Markdown tables from the eval JSONs of one results folder: `python results/tables.py results/demo-follow`.

One table per file of clean demos (variant x method) and one table of every corrupted-demo file (corruption x
variant x method); goal rate with its 95% Wilson interval, failure rate, mean steps to the goal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(metrics: dict) -> str:
    lo, hi = metrics["goal_ci95"]
    steps = "-" if metrics["steps_mean"] is None else f"{metrics['steps_mean']:.0f}"
    return f"{metrics['goal_rate']:.0%} [{lo:.2f}, {hi:.2f}] / {metrics['failure_rate']:.0%} / {steps}"


def _methods(results: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for result in results:
        for methods in result["variants"].values():
            seen.update(dict.fromkeys(methods))
    return list(seen)


def clean_table(result: dict, name: str) -> str:
    methods = _methods([result])
    lines = [f"### {name} ({result['episodes']} episodes per cell; goal [95% CI] / failure / steps to goal)", "",
             "| variant | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]  # fmt: skip
    for variant, by_method in result["variants"].items():
        lines.append(f"| {variant} | " + " | ".join(_cell(by_method[m]) if m in by_method else "-" for m in methods) + " |")
    return "\n".join(lines)


def corruption_table(results: list[dict], name: str) -> str:
    methods = _methods(results)
    episodes = sorted({r["episodes"] for r in results})
    lines = [f"### {name} ({'/'.join(map(str, episodes))} episodes per cell; goal [95% CI] / failure / steps to goal)",
             "", "| corruption | variant | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]  # fmt: skip
    for result in sorted(results, key=lambda r: r["corruption"]):
        for variant, by_method in result["variants"].items():
            refused = result["demos"][variant].get("refused")
            cells = (["refused by the demo check"] * len(methods) if refused else
                     [_cell(by_method[m]) if m in by_method else "-" for m in methods])  # fmt: skip
            lines.append(f"| {result['corruption']} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(folder: Path) -> str:
    files = sorted(folder.glob("*.json"))
    loaded = [(f.stem, json.loads(f.read_text())) for f in files]
    parts = [clean_table(r, stem) for stem, r in loaded if not r.get("corruption")]
    for family in sorted({stem.split("-")[0] for stem, r in loaded if r.get("corruption")}):
        parts.append(corruption_table([r for stem, r in loaded if r.get("corruption") and stem.startswith(family)],
                                      f"{family}: corrupted demos"))  # fmt: skip
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
