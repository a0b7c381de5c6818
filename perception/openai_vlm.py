"""The "openai" backend: any OpenAI-compatible chat-completions server (OpenAI, vLLM, `transformers
serve`, ...) through the official openai client, the image sent as a base64 PNG data URL.

The API key is read from the environment variable the config names, never from the config itself,
stripped and checked there, and never appears in a repr, a reply, a log line or an error message
(perception.secrets). 429 and 5xx answers are retried with the client's exponential backoff
(max_retries); 401 and an unknown model (404) fail at once with a clear BackendError. The server's answer
is read by this module, capped in size and nesting before it is parsed: whatever it sends ends as reply
text or a BackendError.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.messages import BaseMessage, convert_to_openai_messages
from pydantic import BaseModel, Field, ValidationError

from mstt.perception.chat import MAX_JSON_DEPTH, MAX_REPLY_CHARS, json_nesting, schema_errors
from mstt.perception.errors import BackendError, check_field, is_count, is_positive_number
from mstt.perception.secrets import hold, key_problem, scrub
from mstt.perception.vlm import VLMConfig, VLMPerceiver

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 3
NO_KEY = "no-key"
"""Sent when api_key_env is None (local servers without authentication): the client insists on one."""
MAX_RESPONSE_BYTES = 16 * MAX_REPLY_CHARS
"""Largest HTTP body read as a completion: one whose reply is at the reply cap fits even with every
character JSON-escaped (\\uXXXX, 6 bytes). A bigger body is refused before it is parsed."""
PREVIEW_CHARS = 80
"""How much of a body that is no completion is quoted, so the user can tell what answered."""
SERVER_MESSAGE_CHARS = 300
"""How much of a server's error message is quoted: the client puts whole error bodies into it."""
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
"""Environment variable names as shells write them; upper case keeps a pasted key from passing as one."""


@dataclass(frozen=True, kw_only=True)
class OpenAIConfig(VLMConfig):
    """An OpenAI-compatible chat-completions endpoint."""

    model: str
    """Model name as the server knows it, e.g. 'gpt-4o' or the served directory's name."""
    base_url: str | None = None
    """Server URL including /v1, e.g. 'http://127.0.0.1:8000/v1'; None: the client's default (OpenAI)."""
    api_key_env: str | None = DEFAULT_API_KEY_ENV
    """Name of the environment variable holding the API key; None for servers without authentication."""
    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds to wait for one answer."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries, with exponential backoff, on 408/409/429/5xx answers and dropped connections."""
    temperature: float | None = 0.0
    """Sampling temperature; None leaves it to the server."""
    max_tokens: int | None = None
    """Answer length cap; None leaves it to the server."""

    def __post_init__(self) -> None:
        super().__post_init__()
        cls = "OpenAIConfig"
        check_field(cls, isinstance(self.model, str) and bool(self.model), "model", self.model, "must name a model")
        env = self.api_key_env
        if not (env is None or (isinstance(env, str) and ENV_NAME.fullmatch(env))):
            # Not echoed: a value that is no variable name may well be a pasted key.
            raise ValueError(
                "OpenAIConfig.api_key_env must be the NAME of an environment variable holding the key "
                "(upper case, e.g. OPENAI_API_KEY) or None; the key itself never goes in a config"
            )
        check_field(cls, is_positive_number(self.timeout), "timeout", self.timeout, "must be a number of seconds > 0")
        check_field(cls, is_count(self.max_retries, 0), "max_retries", self.max_retries, "must be an integer >= 0")
        tokens = self.max_tokens
        check_field(cls, tokens is None or is_count(tokens, 1), "max_tokens", tokens, "must be an integer > 0 or None")


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Completion(BaseModel):
    """The part of a chat-completions answer this backend reads; every other field is ignored."""

    choices: list[_Choice] = Field(min_length=1)


def _read_key(config: OpenAIConfig) -> str:
    """The API key from $api_key_env, stripped of surrounding whitespace (a pasted line break) and checked
    to be sendable; errors say what is wrong with it without showing it."""
    env = config.api_key_env
    if env is None:
        return NO_KEY
    key = os.environ.get(env, "").strip()
    if not key:
        raise BackendError(
            f"openai backend: the environment variable {env} (OpenAIConfig.api_key_env) is not set or blank; "
            "export the API key there, or set api_key_env to null for a server without authentication"
        )
    problem = key_problem(key)
    if problem is not None:
        raise BackendError(
            f"openai backend: the API key in ${env} is malformed: {problem}. Copy the key again into {env} "
            "without extra characters (the key itself is not shown)"
        )
    return key


class OpenAIChat:
    """A ChatModel on an OpenAI-compatible server. `http_client` (an httpx2.Client) is for tests and
    proxies; the default is the openai client's own."""

    def __init__(self, config: OpenAIConfig, http_client: Any = None) -> None:
        self.config = config
        key = _read_key(config)
        if config.api_key_env is not None:
            hold(self, key)  # scrubbed from replies, errors and logs for as long as this chat exists
        self._client = openai.OpenAI(
            api_key=key,
            base_url=config.base_url,
            timeout=config.timeout,
            max_retries=config.max_retries,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIChat(model={self.config.model!r}, base_url={self._where!r}, "
            f"api_key_env={self.config.api_key_env!r})"
        )

    @property
    def _where(self) -> str:
        return str(self._client.base_url)

    def _server_message(self, error: openai.APIError) -> str:
        return scrub(str(error.message or ""))[:SERVER_MESSAGE_CHARS]

    def _reply(self, body: bytes, content_type: str) -> str:
        """The reply text of a 200 answer's body, or a BackendError saying what the server sent instead."""
        config, where = self.config, self._where
        fix = "check that OpenAIConfig.base_url is the server's OpenAI-compatible address, ending in /v1"
        if len(body) > MAX_RESPONSE_BYTES:
            raise BackendError(
                f"openai backend: {where} answered with {len(body):,} bytes and at most {MAX_RESPONSE_BYTES:,} are "
                f"read as one chat completion; set OpenAIConfig.max_tokens to bound the answers of {config.model!r}"
            )
        text = body.decode("utf-8", "replace")
        preview = scrub(text)[:PREVIEW_CHARS]  # scrubbed whole: a cut could keep half a key
        sent = f"{content_type or 'no content type'}, starting {preview!r}"
        depth = json_nesting(text)
        if depth > MAX_JSON_DEPTH:
            raise BackendError(
                f"openai backend: {where} answered with JSON nested {depth:,} deep ({sent}), not a chat "
                f"completion; {fix}"
            )
        try:
            completion = _Completion.model_validate(json.loads(text))
        except ValidationError as error:
            problem = f"JSON that is not a chat completion for model {config.model!r} ({schema_errors(error)})"
        except (RecursionError, ValueError):
            problem = f"something that is not JSON ({sent})"
        else:
            return scrub(completion.choices[0].message.content or "")
        # Raised outside the handlers, so the parser's error, which may quote the body, is not kept.
        raise BackendError(f"openai backend: {where} answered with {problem}; {fix}") from None

    def complete(self, messages: Sequence[BaseMessage]) -> str:
        config = self.config
        request: dict[str, Any] = {"model": config.model, "messages": convert_to_openai_messages(list(messages))}
        if config.temperature is not None:
            request["temperature"] = config.temperature
        if config.max_tokens is not None:
            request["max_tokens"] = config.max_tokens
        try:
            # The raw body: this module caps and parses it, where the client's own parsing could fail
            # with RecursionError or return a bare string for an HTML page.
            raw = self._client.chat.completions.with_raw_response.create(**request)
        except openai.APIError as error:
            failure = self._failure(error)
        else:
            return self._reply(raw.content, raw.headers.get("content-type", ""))
        # Raised outside the handler: the client's exception, whose message can quote the key, is not kept
        # as this error's context.
        raise BackendError(failure) from None

    def _failure(self, error: openai.APIError) -> str:
        """What went wrong with a request the client gave up on, and what to do."""
        config, where = self.config, self._where
        if isinstance(error, openai.AuthenticationError):
            # The server's own 401 text can echo part of the key: it is not repeated here.
            return (
                f"openai backend: {where} refused the API key from ${config.api_key_env} (401 Unauthorized); "
                "check that the key is valid for this server"
            )
        if isinstance(error, openai.PermissionDeniedError):
            return (
                f"openai backend: {where} denied access to model {config.model!r} (403 Forbidden): "
                f"{self._server_message(error)}"
            )
        if isinstance(error, openai.NotFoundError):
            return (
                f"openai backend: {where} has no model {config.model!r} (404 Not Found: "
                f"{self._server_message(error)}); check OpenAIConfig.model against the server's model list "
                "and that base_url ends in /v1"
            )
        if isinstance(error, openai.RateLimitError):
            return (
                f"openai backend: {where} still answered 429 Too Many Requests after {config.max_retries} "
                "retries with backoff; wait, or raise OpenAIConfig.max_retries"
            )
        if isinstance(error, openai.APITimeoutError):
            return (
                f"openai backend: {where} gave no answer within {config.timeout} s "
                f"({config.max_retries} retries); raise OpenAIConfig.timeout or check the server"
            )
        if isinstance(error, openai.APIConnectionError):
            return (
                f"openai backend: cannot connect to {where} ({config.max_retries} retries); is the server "
                "running and OpenAIConfig.base_url right?"
            )
        if isinstance(error, openai.APIStatusError):
            retried = f" after {config.max_retries} retries" if error.status_code >= 500 else ""
            return (
                f"openai backend: {where} answered {error.status_code}{retried} for model {config.model!r}: "
                f"{self._server_message(error)}"
            )
        return (
            f"openai backend: the request to {where} failed ({type(error).__name__}: "
            f"{self._server_message(error)}); check the server and OpenAIConfig.base_url"
        )


class OpenAIPerceiver(VLMPerceiver):
    """The "openai" backend: VLMPerceiver over an OpenAI-compatible server."""

    def __init__(self, config: OpenAIConfig, http_client: Any = None) -> None:
        super().__init__(OpenAIChat(config, http_client), config, "openai")
