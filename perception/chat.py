"""The one loop every model backend shares: send a chat, parse the reply into a pydantic schema, check
it, and re-prompt with the reasons it was refused until it passes or the budget is spent.

A backend only provides a `ChatModel` (messages in, reply text out); prompts are langchain-core
messages whose images are base64 PNG data URLs, so every backend sees the same conversation.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.prompts import ChatPromptTemplate
from PIL import Image
from pydantic import BaseModel

from perception.errors import PerceptionError
from perception.segmentation import as_rgb

log = logging.getLogger(__name__)

SchemaT = TypeVar("SchemaT", bound=BaseModel)
DATA_URL_PREFIX = "data:image/png;base64,"
PARSE_ERROR_CHARS = 300
"""A parse failure is reported with at most this much of the parser's message."""


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


def _parse_problem(error: OutputParserException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else "empty reply"
    if len(first) > PARSE_ERROR_CHARS:
        first = first[:PARSE_ERROR_CHARS] + "..."
    return f"the answer is not JSON matching the schema ({first})"


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
        reply = chat.complete(history)
        try:
            answer = parser.parse(reply)
        except OutputParserException as error:
            problems = [_parse_problem(error)]
        else:
            problems = check(answer)
            if not problems:
                return answer
        log.info("%s: attempt %d refused: %s", what, attempt + 1, "; ".join(problems))
        failures += [f"attempt {attempt + 1}: {problem}" for problem in problems]
        reasons = "\n".join(f"- {problem}" for problem in problems)
        history += [AIMessage(content=reply), *retry.format_messages(reasons=reasons)]
    raise PerceptionError(
        f"{what}: no valid answer in {1 + max_reprompts} attempt(s) (raise max_reprompts or use a "
        "stronger model)",
        failures,
    )
