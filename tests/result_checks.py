"""What every result JSON must hold, checked the same way in the integration and e2e layers: a provenance block with
every field (agent/core/provenance.py), no absolute path of the machine that wrote it, and the checkout it names
unchanged when the tree is edited during the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

PROVENANCE_KEYS = {"package", "version", "git", "config", "seeds", "device", "torch_threads", "date", "host"}
HOST_KEYS = {"machine", "processor", "cpu_count", "gpu"}


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value: keys and values, nested ones too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def absolute_paths(result: dict[str, Any]) -> list[str]:
    return [s for s in strings(result) if s.startswith("/")]


def provenance_problems(result: dict[str, Any]) -> list[str]:
    """What is missing from ``result``'s provenance block (empty: nothing)."""
    block = result.get("provenance")
    if not isinstance(block, dict):
        return ["no provenance block"]
    problems = [f"missing {key}" for key in sorted(PROVENANCE_KEYS - set(block))]
    problems += [f"host misses {key}" for key in sorted(HOST_KEYS - set(block.get("host", {})))]
    if not block.get("config"):
        problems.append("empty config")
    if not block.get("seeds"):
        problems.append("no seeds")
    git = block.get("git")
    if git is not None and set(git) != {"commit", "dirty"}:
        problems.append(f"git block {git}")
    if not str(block.get("date", "")).endswith("+00:00"):
        problems.append(f"date {block.get('date')!r} is not UTC ISO")
    return problems


def without_date(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` less the one field two runs of the same command differ in: the provenance's date."""
    block = {key: value for key, value in result["provenance"].items() if key != "date"}
    return {**result, "provenance": block}


def then_edit_checkout(play: Callable[..., Any], checkout: dict[str, bool]) -> Callable[..., Any]:
    """``play`` (an episode rollout) that marks a stand-in checkout edited once it returns: someone changes the tree
    while a long run goes on."""

    def play_then_edit(*args: Any, **kwargs: Any) -> Any:
        outcomes = play(*args, **kwargs)
        checkout["dirty"] = True
        return outcomes

    return play_then_edit
