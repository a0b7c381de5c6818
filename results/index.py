"""Index of every result JSON under results/, read from the JSONs themselves.

    .venv/bin/python results/index.py            # writes results/README.md
    .venv/bin/python results/index.py --check    # exit 1 if README.md is stale or a JSON holds an absolute path

One section per benchmark folder (results/<benchmark>/), one row per JSON: task, config, episodes, variants and
the headline numbers. Known shapes: `mstt eval` ({task, config, episodes, variants: {V: {M: {goal_rate,
failure_rate, ...}}}}), `mstt offline` ({experiment, methods: {M: {success_rate, normalised_score, ...}}}),
`mstt bench tokens` ({purity, mask_share_of_route_windows}) and `mstt theory` ({p_min, gap}); any other JSON is
summarised by its top-level scalars. A file that cannot be read gets a row that says why; nothing stops the index.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ABSOLUTE = re.compile(r"^(/|[A-Za-z]:\\)")  # a POSIX or Windows absolute path


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}g}"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _strings(value: Any):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def absolute_paths(data: Any) -> list[str]:
    """Strings in the JSON that look like absolute machine paths (there should be none)."""
    return sorted({s for s in _strings(data) if ABSOLUTE.match(s) and "/" in s[1:]})


def _config(value: Any) -> str:
    """The config a JSON names, shown relative (an absolute path is flagged separately, never shown whole)."""
    if not isinstance(value, str):
        return "—"
    if ABSOLUTE.match(value) and "/configs/" in value:
        return "configs/" + value.rsplit("/configs/", 1)[1]
    return value


def _eval_row(data: dict) -> dict[str, str]:
    variants = data.get("variants") or {}
    goal: dict[str, list[float]] = {}
    failure: dict[str, list[float]] = {}
    for by_method in variants.values():
        for method, metrics in (by_method or {}).items():
            if not isinstance(metrics, dict):
                continue
            if isinstance(metrics.get("goal_rate"), (int, float)):
                goal.setdefault(method, []).append(metrics["goal_rate"])
            if isinstance(metrics.get("failure_rate"), (int, float)):
                failure.setdefault(method, []).append(metrics["failure_rate"])
    refused = [v for v, demo in (data.get("demos") or {}).items() if isinstance(demo, dict) and demo.get("refused")]
    methods = list(dict.fromkeys([*goal, *failure]))
    headline = "; ".join(f"{m} {_pct(_mean(goal.get(m, [])))} / {_pct(_mean(failure.get(m, [])))}" for m in methods)
    if refused:
        headline += ("; " if headline else "") + "demo refused: " + ", ".join(refused)
    task = str(data.get("task", "?"))
    extras = [f"{key} {data[key]}" for key in ("observation", "corruption") if data.get(key) not in (None, "state")]
    return {"task": task + (f" ({', '.join(extras)})" if extras else ""), "config": _config(data.get("config")),
            "episodes": _num(data.get("episodes", "—")), "variants": ", ".join(variants) or "—",
            "headline": headline or "—"}  # fmt: skip


def _offline_row(data: dict) -> dict[str, str]:
    methods = data.get("methods") or {}
    parts = []
    for method, metrics in methods.items():
        metrics = metrics if isinstance(metrics, dict) else {}
        part = f"{method} {_pct(metrics.get('success_rate'))}"
        if isinstance(metrics.get("normalised_score"), (int, float)):
            part += f" (score {metrics['normalised_score']:.1f})"
        parts.append(part)
    task = " ".join(str(data[key]) for key in ("task", "source") if key in data) or "?"
    if data.get("decoder"):
        task += f", {data['decoder']} decoder"
    return {"task": task, "config": _config(data.get("experiment", data.get("config"))),
            "episodes": _num(data.get("episodes", "—")), "variants": "—",
            "headline": "success: " + "; ".join(parts) if parts else "—"}  # fmt: skip


def _tokens_row(data: dict) -> dict[str, str]:
    shares = data.get("mask_share_of_route_windows") or {}
    own, leak = [], []
    for target, by_route in shares.items():
        if not isinstance(by_route, dict):
            continue
        for route, share in by_route.items():
            if route != "mask_size" and isinstance(share, (int, float)):
                (own if route == target else leak).append(share)
    headline = f"purity {_num(data.get('purity'))}"
    if own:
        headline += f"; own route kept {min(own):.2f}-{max(own):.2f}"
    if leak:
        headline += f"; leakage <= {max(leak):.3f}"
    return {"task": "maze tokens", "config": _config(data.get("config")),
            "episodes": f"{_num(data.get('windows', '—'))} windows", "variants": ", ".join(shares) or "—",
            "headline": headline}  # fmt: skip


def _theory_row(data: dict) -> dict[str, str]:
    pairs = [(p, g) for p, g in zip(data["p_min"], data["gap"]) if isinstance(g, (int, float))]
    top = max(pairs, key=lambda pair: pair[1]) if pairs else (None, None)
    last = pairs[-1] if pairs else (None, None)
    return {"task": "theory (four-room skill MDP)", "config": "—", "episodes": "—",
            "variants": f"{len(pairs)} values of p_min",
            "headline": f"gap {_num(last[1])} at p_min {_num(last[0])}; "
                        f"max {_num(top[1])} at {_num(top[0])}"}  # fmt: skip


def _generic_row(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        size = len(data) if isinstance(data, list) else 1
        return {"task": "?", "config": "—", "episodes": "—", "variants": "—",
                "headline": f"a JSON {type(data).__name__} of {size} items"}  # fmt: skip
    scalars = [f"{key} {_num(value)}" for key, value in data.items()
               if isinstance(value, (int, float, str)) and key not in ("task", "config")][:6]  # fmt: skip
    return {"task": str(data.get("task", "?")), "config": _config(data.get("config")),
            "episodes": _num(data.get("episodes", "—")), "variants": "—", "headline": "; ".join(scalars) or "—"}


def row(data: Any) -> dict[str, str]:
    """The index row of one result JSON, by its shape."""
    if isinstance(data, dict):
        if isinstance(data.get("variants"), dict):
            return _eval_row(data)
        if isinstance(data.get("methods"), dict):
            return _offline_row(data)
        if "purity" in data and "mask_share_of_route_windows" in data:
            return _tokens_row(data)
        if isinstance(data.get("p_min"), list) and isinstance(data.get("gap"), list):
            return _theory_row(data)
    return _generic_row(data)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def build(root: Path = HERE) -> tuple[str, list[str]]:
    """The index text and the problems found (absolute paths, unreadable files)."""
    problems: list[str] = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    lines = ["# Results", "",
             "Generated by `.venv/bin/python results/index.py` from the JSONs below; do not edit by hand. The current",
             "tables, with their method, are in [BENCHMARKS.md](../BENCHMARKS.md); earlier measurements in",
             "[CHANGELOG.md](../CHANGELOG.md). Each folder holds the exact commands that wrote its files.", "",
             "Headline: for evaluations, goal rate / failure rate of each method, averaged over the variants; for",
             "offline RL, success rate (D4RL-normalised score); for tokens, route purity and the demo masks' coverage.",
             ""]  # fmt: skip
    for folder in folders:
        files = sorted(folder.rglob("*.json"))
        others = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json")
        if not files and not others:
            continue
        lines += [f"## {folder.name}", ""]
        if others:
            links = [f"[{p.relative_to(folder).as_posix()}]({folder.name}/{p.relative_to(folder).as_posix()})"
                     for p in others]  # fmt: skip
            lines += ["Other files: " + ", ".join(links) + ".", ""]
        if not files:
            continue
        lines += ["| file | task | config | episodes | variants | headline |", "|---|---|---|---|---|---|"]
        for path in files:
            name = path.relative_to(folder).as_posix()
            link = f"[{name}]({folder.name}/{name})"
            try:
                data = json.loads(path.read_text())
                cells = row(data)
                bad = absolute_paths(data)
                if bad:
                    problems.append(f"{path.relative_to(root)}: absolute path(s) {', '.join(bad)}")
                    cells["headline"] += " **(holds an absolute path)**"
            except Exception as error:  # an unreadable file gets a row, not a crash
                problems.append(f"{path.relative_to(root)}: {type(error).__name__}: {error}")
                cells = {"task": "—", "config": "—", "episodes": "—", "variants": "—",
                         "headline": f"unreadable ({type(error).__name__})"}  # fmt: skip
            columns = (link, cells["task"], cells["config"], cells["episodes"], cells["variants"], cells["headline"])
            lines.append("| " + " | ".join(_escape(c) for c in columns) + " |")
        lines.append("")
    return "\n".join(lines), problems


def main(argv: list[str]) -> int:
    text, problems = build()
    for problem in problems:
        print(f"results/{problem}", file=sys.stderr)
    target = HERE / "README.md"
    if "--check" in argv:
        stale = not target.exists() or target.read_text() != text
        if stale:
            print("results/README.md is out of date: run .venv/bin/python results/index.py", file=sys.stderr)
        return 1 if stale or problems else 0
    target.write_text(text)
    return 0  # problems are reported above; --check fails on them


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
