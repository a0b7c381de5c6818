"""The one loop every model backend shares: send a chat, parse the reply into a pydantic schema, check
it, and re-prompt with the reasons it was refused until it passes or the budget is spent.

A backend only provides a `ChatModel` (messages in, reply text out); prompts are langchain-core
messages whose images are base64 PNG data URLs, so every backend sees the same conversation. Every reply,
whatever its size or content, ends as an accepted answer, a re-prompt or a PerceptionError: its size and
bracket nesting are checked before any parser sees it.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.prompts import ChatPromptTemplate
from PIL import Image
from pydantic import BaseModel, ValidationError

from mstt.perception.errors import PerceptionError
from mstt.perception.segmentation import as_rgb

log = logging.getLogger(__name__)

SchemaT = TypeVar("SchemaT", bound=BaseModel)
DATA_URL_PREFIX = "data:image/png;base64,"
PARSE_ERROR_CHARS = 300
"""A parse failure is reported with at most this much of the parser's message."""
SCHEMA_ERRORS_SHOWN = 3
"""Schema violations named in a refusal; the model fixes the first ones first anyway."""
MAX_REPLY_CHARS = 32_000
"""Longest reply parsed; a route of 50 points takes ~1,000 characters. Longer ones are refused unparsed
(and cut to this length in the conversation), which bounds parsing time and re-prompt size."""
MAX_JSON_DEPTH = 32
"""Deepest bracket nesting parsed; {"points": [[u, v], ...]} needs 3. Deeper replies are refused before
json.loads, whose recursion fails near 1,000 levels."""
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)')
"""A JSON string literal, escapes included: brackets inside one are text, not nesting. One left open runs
to the end of the text; with the possessive quantifiers, every match attempt that starts succeeds, which
keeps the pass linear where a backtracking pattern is quadratic on runs of escaped quotes."""
_BRACKET_STEP = np.zeros(256, dtype=np.int64)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


class ChatModel(Protocol):
    """A chat model: langchain-core messages (text and image_url parts) -> the reply's text."""

    def complete(self, messages: Sequence[BaseMessage]) -> str: ...


def image_data_url(image: Image.Image | np.ndarray) -> str:
    """The image as a base64 PNG data URL, the form OpenAI-style chat APIs take images in."""
    buffer = io.BytesIO()
    Image.fromarray(as_rgb(image)).save(buffer, format="PNG")
    return DATA_URL_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_data_url(url: str) -> Image.Image:
    """A base64 data URL back into an RGB PIL image (local models take pixels, not URLs)."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ValueError(f"expected a base64 image data URL, got one starting {url[:30]!r}")
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def json_nesting(text: str) -> int:
    """How deep brackets ([ and {) nest in `text` outside JSON string literals, without parsing it.

    The largest rise of the running bracket count, so a stray closing bracket earlier in free text
    cannot hide a deep nest after it. One regex pass and one vectorised sum: cheap on megabytes.
    """
    # Bracket bytes are ASCII, and UTF-8 never uses ASCII bytes inside a multi-byte character.
    codes = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    depth = np.concatenate([[0], np.cumsum(_BRACKET_STEP[codes])])
    return int(np.max(depth - np.minimum.accumulate(depth)))


def reply_problem(reply: str) -> str | None:
    """Why a reply is refused before parsing (too long, nested too deep), or None to parse it."""
    if len(reply) > MAX_REPLY_CHARS:
        return (
            f"the answer is {len(reply):,} characters long and at most {MAX_REPLY_CHARS:,} are read; answer "
            "with the JSON object only"
        )
    depth = json_nesting(reply)
    if depth > MAX_JSON_DEPTH:
        return (
            f"the answer nests brackets {depth:,} deep and at most {MAX_JSON_DEPTH} levels are read; answer "
            "with the JSON object only"
        )
    return None


def _shortened(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "empty reply"
    return first[:PARSE_ERROR_CHARS] + "..." if len(first) > PARSE_ERROR_CHARS else first


def schema_errors(error: ValidationError) -> str:
    """Where a value breaks a pydantic schema, e.g. 'points: List should have at most 100 items ...'."""
    found = [f"{'.'.join(map(str, e['loc'])) or 'the value'}: {e['msg']}" for e in error.errors()]
    more = f"; and {len(found) - SCHEMA_ERRORS_SHOWN} more" if len(found) > SCHEMA_ERRORS_SHOWN else ""
    return _shortened("; ".join(found[:SCHEMA_ERRORS_SHOWN]) + more)


def _parse_problem(error: OutputParserException) -> str:
    # The parser's own message starts by quoting the whole reply; what was wrong with it is the cause.
    cause = error.__cause__
    details = schema_errors(cause) if isinstance(cause, ValidationError) else _shortened(str(error))
    return f"the answer is not JSON matching the schema ({details})"


def parse_reply(reply: str, parser: PydanticOutputParser) -> tuple[BaseModel | None, str | None]:
    """(answer, None) when `reply` parses into the parser's schema, else (None, why not)."""
    problem = reply_problem(reply)
    if problem is not None:
        return None, problem
    try:
        return parser.parse(reply), None
    except OutputParserException as error:
        return None, _parse_problem(error)
    except (RecursionError, ValueError) as error:
        # The checks above keep json.loads off deep nests; this catches what they cannot see, such as an
        # integer of more than 4,300 digits (Python refuses to convert it) or nesting hidden in text.
        return None, f"the answer cannot be read as JSON ({_shortened(f'{type(error).__name__}: {error}')})"


def _encodable(reply: str) -> str:
    """The reply with lone surrogates (what a JSON "\\ud800" escape decodes to) replaced by '?': they
    cannot be encoded as UTF-8, so printing the reply or sending it back in a re-prompt would fail."""
    return reply if reply.isascii() else reply.encode("utf-8", "replace").decode("utf-8")


def ask_structured(
    chat: ChatModel,
    messages: Sequence[BaseMessage],
    parser: PydanticOutputParser,
    check: Callable[[SchemaT], list[str]],
    retry: ChatPromptTemplate,
    max_reprompts: int,
    what: str,
) -> SchemaT:
    """Ask until an answer parses and `check` finds no problem; at most 1 + max_reprompts calls.

    A refused answer stays in the conversation, followed by `retry` formatted with {reasons} (one
    '- ' line each). Raises PerceptionError listing every attempt's problems when none passes.
    """
    history = list(messages)
    failures: list[str] = []
    for attempt in range(1 + max_reprompts):
        reply = _encodable(chat.complete(history))
        answer, problem = parse_reply(reply, parser)
        problems = check(answer) if problem is None else [problem]
        if not problems:
            return answer
        log.info("%s: attempt %d refused: %s", what, attempt + 1, "; ".join(problems))
        failures += [f"attempt {attempt + 1}: {problem}" for problem in problems]
        reasons = "\n".join(f"- {problem}" for problem in problems)
        history += [AIMessage(content=reply[:MAX_REPLY_CHARS]), *retry.format_messages(reasons=reasons)]
    raise PerceptionError(
        f"{what}: no valid answer in {1 + max_reprompts} attempt(s) (raise max_reprompts or use a "
        "stronger model)",
        failures,
    )
