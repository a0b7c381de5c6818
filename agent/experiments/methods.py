"""The eval methods in one table: what mask each plans with, which critic ranks its candidates, whether the planner's
demo match reads the demo's windows, and what turns its decisions into actions. `mstt eval`, `mstt bench` and
`mstt run --policy` read this table; a method is added by one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MaskKind = Literal["demo", "all", "oracle", "random", "none"]
CriticKind = Literal["learned", "constant", "none"]
ControllerKind = Literal["plan", "dds_executor", "policy", "demo_route", "diffuser", "dara"]


@dataclass(frozen=True)
class EvalMethod:
    name: str
    mask: MaskKind
    """demo: the demo's mask; all: every skill; oracle: from the true walls or zones; random: as many random tokens
    as the demo's; none: the method does not plan with skills."""
    critic: CriticKind
    """learned: Q(s, z, m, g) ranks candidates; constant: every skill valued alike; none: no planner."""
    demo_windows: bool
    """The planner's demo match (planner.match_radius) keeps only candidates near the demo's own windows."""
    controller: ControllerKind
    """plan: track the chosen candidate; dds_executor: execute it with DDS skills; policy: BC acts; demo_route: follow
    the demo's route (no learned part); diffuser: track Diffuser's long plans, replanned; dara: DARA's IQL policy of
    the variant acts."""
    needs_stage: str | None = None
    """An optional training stage the method needs (its config section)."""
    target_share: float | None = None
    """dara: the size of the target dataset it trained on, as a share of the source dataset's."""
    summary: str = ""


METHODS: dict[str, EvalMethod] = {
    m.name: m
    for m in (
        EvalMethod("mstt", "demo", "learned", True, "plan", summary="MSTT: the demo's mask, the masked critic"),
        EvalMethod(
            "mstt_dds",
            "demo",
            "learned",
            True,
            "dds_executor",
            needs_stage="executor_dds",
            summary="MSTT's plans executed closed loop by DDS skills",
        ),  # fmt: skip
        EvalMethod(
            "unmasked", "all", "learned", False, "plan", summary="every skill: a planner that ignores the change"
        ),
        EvalMethod("oracle_mask", "oracle", "learned", False, "plan", summary="mask from the true walls or zones"),
        EvalMethod("random_mask", "random", "learned", False, "plan", summary="as many random tokens as the demo's"),
        EvalMethod("mask_only", "demo", "constant", True, "plan", summary="the demo's mask with a constant critic"),
        EvalMethod("bc", "none", "none", False, "policy", summary="goal-conditioned behaviour cloning"),
        EvalMethod(
            "demo_tracker",
            "none",
            "none",
            False,
            "demo_route",
            summary="follow the demo's route with the task's tracker; nothing learned",
        ),  # fmt: skip
        EvalMethod(
            "diffuser",
            "none",
            "none",
            False,
            "diffuser",
            needs_stage="diffuser",
            summary="Diffuser (Janner et al. 2022): source-trained, start and goal inpainted, tracked",
        ),  # fmt: skip
        EvalMethod(
            "dara_5pct",
            "none",
            "none",
            False,
            "dara",
            needs_stage="dara",
            target_share=0.05,
            summary="DARA (Liu et al. 2022): IQL on source + 5% target data, rewards augmented",
        ),  # fmt: skip
        EvalMethod(
            "dara_10pct",
            "none",
            "none",
            False,
            "dara",
            needs_stage="dara",
            target_share=0.10,
            summary="DARA with a target dataset of 10% of the source's",
        ),  # fmt: skip
    )
}
AGENT_POLICIES: tuple[str, ...] = ("mstt", "mask_only", "demo_tracker")
"""The methods `mstt run --policy` can act with: those that need nothing but the demo and the trained run."""
DEFAULT_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.needs_stage is None)
"""What eval.methods defaults to: every method that needs no optional stage."""


def check_methods(names: list[str] | tuple[str, ...], where: str) -> list[str]:
    """``names`` if every one is a method of the table; else a ValueError naming ``where`` and the unknown ones."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"{where}: unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    return list(names)
