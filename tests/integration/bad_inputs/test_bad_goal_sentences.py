"""Goal sentences the offline parser must read right or refuse, never misread: the paraphrase set in
tests/data/goal_sentences.yaml (negation, corners, cells, the start, routes, regions, zones, heights,
typos, German/French/Spanish), the four misreadings the set was written against, and the fallback hook.

Summary table: `PYTHONPATH=tests python tests/integration/bad_inputs/test_bad_goal_sentences.py`
(or pytest -s on this file).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
import yaml
from langchain_core.messages import BaseMessage

from mstt.agent.core.camera import FreeCamera
from mstt.agent.worlds import load_config, make_task
from mstt.perception import Goal, GoalParseError, GoalSpec, Scene, parse_goal
from mstt.perception.goal_words import correct_word
from mstt.perception.goals import KNOWN_WORDS, GoalNotUnderstood, llm_fallback, target_for

from repo_paths import CONFIGS, TEST_DATA

SENTENCES = TEST_DATA / "goal_sentences.yaml"
MIN_SENTENCES = 150
MIN_HIT_RATE = 0.95
TUNED_BATCH = "tuned"
"""Sentences without a `batch` were written alongside the parser; held-out batches were run once first."""
DEFAULT_TOLERANCE = 0.01
"""World units a target position may differ from the expected one."""


@cache
def _data() -> dict[str, Any]:
    return yaml.safe_load(SENTENCES.read_text())


CASES: list[dict[str, Any]] = _data()["sentences"]


@cache
def scene(name: str) -> Scene:
    """A scene of goal_sentences.yaml, built as tests/integration/test_perception.py builds it."""
    spec = _data()["scenes"][name]
    task = make_task(load_config(CONFIGS / spec["config"]))
    camera = spec.get("camera")
    return Scene.from_task(task, camera=FreeCamera(**camera) if camera else None)


@dataclass(frozen=True)
class Outcome:
    verdict: str
    """'correct' (the expected goal, or refused as expected), 'refused' (a goal was expected: a miss) or
    'wrong' (a goal other than the sentence's, or a goal where a refusal was expected)."""
    detail: str


def _mismatches(goal: Goal, expect: dict[str, Any], where: Scene) -> list[str]:
    """How a goal differs from the expected meaning; [] when it matches."""
    found: list[str] = []
    tolerance = expect.get("tolerance", DEFAULT_TOLERANCE)
    if "marker" in expect:
        at = where.goal if expect["marker"] == "goal" else where.start
        if goal.kind != "marker" or not np.allclose(goal.position[: len(at)], at[: len(goal.position)], atol=tolerance):
            found.append(f"target {goal.label} at {goal.position}, expected the {expect['marker']} marker at {at}")
    if "cell" in expect and goal.cell != tuple(expect["cell"]):
        found.append(f"target cell {goal.cell}, expected {tuple(expect['cell'])}")
    if "position" in expect and not np.allclose(goal.position, expect["position"], atol=tolerance):
        found.append(f"target position {goal.position}, expected {expect['position']}")
    if "region" in expect:
        region = goal.region
        if region is None or region.name != expect["region"] or not region.contains(goal.target[None])[0]:
            found.append(f"target {goal.label}, expected a point of the {expect['region']} region")
    avoid = sorted({box.name for box in goal.avoid})
    if avoid != sorted(expect.get("avoid", [])):
        found.append(f"avoid {avoid}, expected {sorted(expect.get('avoid', []))}")
    return found


def judge(case: dict[str, Any]) -> Outcome:
    where = scene(case["scene"])
    try:
        goal = parse_goal(case["text"], where)
    except GoalParseError as error:
        first = str(error).splitlines()[0]
        return Outcome("correct" if case["expect"] == "refuse" else "refused", first)
    if case["expect"] == "refuse":
        return Outcome("wrong", f"expected a refusal, got {goal.label} avoiding {[b.name for b in goal.avoid]}")
    mismatches = _mismatches(goal, case["expect"], where)
    return Outcome("wrong" if mismatches else "correct", "; ".join(mismatches) or goal.label)


@cache
def outcomes() -> tuple[Outcome, ...]:
    return tuple(judge(case) for case in CASES)


def summary_table(cases: Sequence[dict[str, Any]], results: Sequence[Outcome]) -> str:
    """Markdown: correct / refused (misses) / wrong and the hit rate, per category, per batch and overall."""
    rows: dict[str, Counter[str]] = {}
    batches: dict[str, Counter[str]] = {}
    for case, result in zip(cases, results):
        rows.setdefault(case["category"], Counter())[result.verdict] += 1
        batches.setdefault(f"batch: {case.get('batch', TUNED_BATCH)}", Counter())[result.verdict] += 1
    rows |= batches
    rows["all"] = sum(batches.values(), Counter())
    lines = ["| sentences of | count | correct | refused (miss) | wrong | hit rate |", "|---|---|---|---|---|---|"]
    for name, count in rows.items():
        total = sum(count.values())
        lines.append(
            f"| {name} | {total} | {count['correct']} | {count['refused']} | {count['wrong']} | "
            f"{count['correct'] / total:.1%} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# The paraphrase set


def test_the_set_is_large_and_covers_every_category() -> None:
    assert len(CASES) >= MIN_SENTENCES
    categories = {case["category"] for case in CASES}
    assert {"negation", "corners", "cells", "start", "routes", "regions", "zones", "heights", "typos"} <= categories
    assert len({(case["scene"], case["text"]) for case in CASES}) == len(CASES), "a sentence is listed twice"


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c['scene']}:{c['text'][:40]}" for c in CASES])
def test_each_sentence_is_read_right_or_refused(index: int) -> None:
    result = outcomes()[index]
    assert result.verdict != "wrong", f"{CASES[index]['text']!r} misread: {result.detail}"


def test_hit_rate_and_no_silent_misreading() -> None:
    results = outcomes()
    print("\n" + summary_table(CASES, results))
    verdicts = Counter(result.verdict for result in results)
    assert verdicts["wrong"] == 0
    assert verdicts["correct"] / len(results) >= MIN_HIT_RATE, [
        (case["text"], result.detail) for case, result in zip(CASES, results) if result.verdict != "correct"
    ]


# ----------------------------------------------------------------------------------------------------------
# The four misreadings (each of these fails on the parser before this set was written)


def test_a_corner_is_the_corner_cell_not_the_quadrant() -> None:
    goal = parse_goal("head to the bottom-right corner of the maze", scene("maze-t1"))
    assert goal.cell == (9, 10)


def test_a_negated_target_is_refused() -> None:
    with pytest.raises(GoalParseError, match="no target found") as info:
        parse_goal("don't go to the red ball", scene("maze-t1"))
    assert "avoid: the goal marker (red ball)" in info.value.understood


def test_a_height_limit_is_kept_or_refused() -> None:
    table = scene("fetch-zone")
    goal = parse_goal("touch the target and stay above 0.5 m", table)
    (below,) = goal.avoid
    assert below.high[2] == pytest.approx(0.5) and below.low[2] == table.extent.low[2]
    assert goal.constraints == ("stay at or above z = 0.50",)
    with pytest.raises(GoalParseError, match="lies in what the instruction says to avoid"):
        parse_goal("touch the target and stay above 0.6 m", table)  # the target is at z = 0.535
    with pytest.raises(GoalParseError, match="flat"):
        parse_goal("go to the red ball and stay above 0.5 m", scene("maze-t1"))


@pytest.mark.parametrize(
    ("sentence", "cell"),
    [
        ("go to row 9, column 1", (9, 1)),
        ("go back to where you started", (5, 1)),
        ("go to the finish", (5, 10)),
        ("take the top route to the destination", (5, 10)),
        ("go to the start while keeping away from the red ball", (5, 1)),
    ],
)
def test_sentences_the_scene_supports_are_read(sentence: str, cell: tuple[int, int]) -> None:
    assert parse_goal(sentence, scene("maze-t1")).cell == cell


# ----------------------------------------------------------------------------------------------------------
# Refusals, and the fallback for what the rules cannot read


def test_a_refusal_says_what_was_and_was_not_understood() -> None:
    with pytest.raises(GoalNotUnderstood) as info:
        parse_goal("go halfway to the red ball", scene("maze-t1"))
    assert info.value.understood == ["target: the goal marker (red ball)"]
    assert "not understood: 'halfway'" in str(info.value)


def test_corrections_and_translations_are_said_back() -> None:
    assert "read 'gaol' as 'goal'" in parse_goal("reach the gaol", scene("maze-t1")).understood
    assert parse_goal("Geh zum roten Ball", scene("maze-t1")).understood[0].startswith("read as German")


EVERYDAY_WORDS = """are blow easy eat halt loser maker marked market pat patch redo rout say slide stag star stray sty
stated stating starred thorough though were tablet corer cornet gal goad rote went made root size stare stark ease
bill bull bald bale starter had hear heard read light bright lift call hall wall gold goat stop step routes routed
router paths cells goals corners squares heights returns tables bottoms columns sided centres""".split()


@pytest.mark.parametrize("word", EVERYDAY_WORDS)
def test_real_words_are_not_corrected_into_vocabulary(word: str) -> None:
    """A typo fix may only turn a non-word into a vocabulary word: 'market' must not become 'marker'."""
    assert correct_word(word, KNOWN_WORDS) is None


@dataclass
class StandIn:
    """A deterministic fallback: the spec it is given, and the sentences it was asked about."""

    answer: GoalSpec
    asked: list[str]

    def __call__(self, instruction: str, where: Scene) -> GoalSpec:
        self.asked.append(instruction)
        return self.answer


def test_the_fallback_reads_only_what_the_rules_cannot() -> None:
    maze = scene("maze-t1")
    fallback = StandIn(GoalSpec(target="cell", cell=(9, 10)), [])
    assert parse_goal("go to the red ball", maze, fallback=fallback).kind == "marker"
    assert fallback.asked == []
    goal = parse_goal("wander off to the far bottom-right nook", maze, fallback=fallback)
    assert goal.cell == (9, 10) and fallback.asked == ["wander off to the far bottom-right nook"]
    assert any(item.startswith("fallback target") for item in goal.understood)


def test_the_fallback_is_checked_like_the_rules() -> None:
    maze = scene("maze-t1")
    with pytest.raises(GoalParseError, match=r"cell \(0, 0\) is a wall"):
        parse_goal("go to the nook", maze, fallback=StandIn(GoalSpec(target="cell", cell=(0, 0)), []))
    with pytest.raises(GoalParseError, match="not the one read"):  # the rules read the red ball as the target
        parse_goal("go quickly-ish to the red ball", maze, fallback=StandIn(GoalSpec(target="cell", cell=(9, 10)), []))


def test_the_fallback_cannot_drop_what_the_rules_read() -> None:
    """The rules read 'avoid cell (1, 5)' and 'not the red ball'; the fallback's answer keeps both."""
    maze = scene("maze-t1")
    goal = parse_goal(
        "meander to the nook, avoiding cell (1, 5)", maze, fallback=StandIn(GoalSpec(target="cell", cell=(9, 10)), [])
    )
    assert [box.name for box in goal.avoid] == ["cell (1, 5)"]
    with pytest.raises(GoalParseError, match="rules out"):
        red_ball_cell = StandIn(GoalSpec(target="cell", cell=(5, 10)), [])
        parse_goal("meander somewhere, not the red ball", maze, fallback=red_ball_cell)


class ScriptedChat:
    """A ChatModel stand-in that replies with fixed texts, in order."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)

    def complete(self, messages: Sequence[BaseMessage]) -> str:
        return self.replies.pop(0)


def test_an_llm_fallback_answers_in_the_same_schema() -> None:
    chat = ScriptedChat('{"target": "cell", "cell": [0, 0]}', '{"target": "corner", "corner": "top-right"}')
    goal = parse_goal("scoot over to the far nook up top on the right", scene("maze-t1"), fallback=llm_fallback(chat))
    assert goal.cell == (1, 10) and chat.replies == []  # the wall cell was re-prompted


def test_a_vlm_route_is_checked_against_the_goal_marker_only_when_nothing_forbids_it() -> None:
    maze = scene("maze-t1")
    assert target_for("follow the winding path to the prize", maze).kind == "marker"
    kept = target_for("follow the winding path to the prize, avoiding cell (1, 5)", maze)
    assert [box.name for box in kept.avoid] == ["cell (1, 5)"]
    for sentence in ("don't go to the red ball, go to the shiny thing", "avoid the red ball"):
        with pytest.raises(GoalParseError):
            target_for(sentence, maze)


def main() -> int:
    results = outcomes()
    print(summary_table(CASES, results))
    for case, result in zip(CASES, results):
        if result.verdict != "correct":
            print(f"- {result.verdict}: {case['text']!r} ({case['scene']}): {result.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
