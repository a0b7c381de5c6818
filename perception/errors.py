"""The two ways perception fails: the picture or sentence could not be read (PerceptionError), or the
model behind a backend could not be used at all (BackendError: bad key, unknown model, unreachable server).
Both scrub any API key a backend holds from their messages (perception.secrets), whoever wrote them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mstt.perception.secrets import scrub


class PerceptionError(ValueError):
    """A picture or an instruction could not be turned into a valid demo, goal or state.

    ``reasons`` lists every problem found, in the order found, so a caller can show or log them.
    """

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        self.reasons = [scrub(reason) for reason in reasons]
        message = scrub(message)
        if self.reasons:
            message = message + "\n" + "\n".join(f"  - {reason}" for reason in self.reasons)
        super().__init__(message)


class GoalParseError(PerceptionError):
    """An instruction names no target, several targets, or something the scene does not have.

    ``understood`` lists what the parser did make out of the sentence.
    """

    def __init__(self, message: str, understood: Sequence[str] = (), reasons: Sequence[str] = ()) -> None:
        self.understood = [scrub(part) for part in understood]
        heard = "; ".join(self.understood) if self.understood else "nothing"
        super().__init__(f"{message} (understood: {heard})", reasons)


class BackendError(RuntimeError):
    """The model behind a backend cannot be used: what failed, where, and what to do.

    Messages never contain an API key.
    """

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))


def check_field(config: str, condition: bool, name: str, value: object, requirement: str) -> None:
    """Refuse a config value with a message naming the class, the field and the value."""
    if not condition:
        raise ValueError(f"{config}.{name} {requirement}, got {value!r}")


def is_positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def is_count(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
