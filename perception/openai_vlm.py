"""The "openai" backend: any OpenAI-compatible chat-completions server (OpenAI, vLLM, `transformers
serve`, ...) through the official openai client, the image sent as a base64 PNG data URL.

The API key is read from the environment variable the config names, never from the config itself, and
never appears in a repr, a log line or an error message. 429 and 5xx answers are retried with the
client's exponential backoff (max_retries); 401 and an unknown model (404) fail at once with a clear
BackendError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.messages import BaseMessage, convert_to_openai_messages

from perception.errors import BackendError, check_field, is_count, is_positive_number
from perception.vlm import VLMConfig, VLMPerceiver

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 3
NO_KEY = "no-key"
"""Sent when api_key_env is None (local servers without authentication): the client insists on one."""
REDACTED = "[redacted]"
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


class OpenAIChat:
    """A ChatModel on an OpenAI-compatible server. `http_client` (an httpx2.Client) is for tests and
    proxies; the default is the openai client's own."""

    def __init__(self, config: OpenAIConfig, http_client: Any = None) -> None:
        self.config = config
        if config.api_key_env is None:
            key = NO_KEY
        else:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise BackendError(
                    f"openai backend: the environment variable {config.api_key_env} (OpenAIConfig.api_key_env) "
                    "is not set; export the API key there, or set api_key_env to null for a server "
                    "without authentication"
                )
        # The key lives only inside the client; it is needed once more, to scrub server messages.
        self._secret = key if config.api_key_env is not None else ""
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

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, REDACTED) if self._secret else text

    def _server_message(self, error: openai.APIStatusError) -> str:
        message = getattr(error, "message", "") or ""
        return self._scrub(str(message))

    def complete(self, messages: Sequence[BaseMessage]) -> str:
        config = self.config
        request: dict[str, Any] = {"model": config.model, "messages": convert_to_openai_messages(list(messages))}
        if config.temperature is not None:
            request["temperature"] = config.temperature
        if config.max_tokens is not None:
            request["max_tokens"] = config.max_tokens
        where = self._where
        try:
            response = self._client.chat.completions.create(**request)
        except openai.AuthenticationError:
            # The server's own 401 text can echo part of the key: it is not repeated here.
            raise BackendError(
                f"openai backend: {where} refused the API key from ${config.api_key_env} (401 Unauthorized); "
                "check that the key is valid for this server"
            ) from None
        except openai.PermissionDeniedError as error:
            raise BackendError(
                f"openai backend: {where} denied access to model {config.model!r} (403 Forbidden): "
                f"{self._server_message(error)}"
            ) from None
        except openai.NotFoundError as error:
            raise BackendError(
                f"openai backend: {where} has no model {config.model!r} (404 Not Found: "
                f"{self._server_message(error)}); check OpenAIConfig.model against the server's model list "
                "and that base_url ends in /v1"
            ) from None
        except openai.RateLimitError:
            raise BackendError(
                f"openai backend: {where} still answered 429 Too Many Requests after {config.max_retries} "
                "retries with backoff; wait, or raise OpenAIConfig.max_retries"
            ) from None
        except openai.APITimeoutError:
            raise BackendError(
                f"openai backend: {where} gave no answer within {config.timeout} s "
                f"({config.max_retries} retries); raise OpenAIConfig.timeout or check the server"
            ) from None
        except openai.APIConnectionError:
            raise BackendError(
                f"openai backend: cannot connect to {where} ({config.max_retries} retries); is the server "
                "running and OpenAIConfig.base_url right?"
            ) from None
        except openai.APIStatusError as error:
            retried = f" after {config.max_retries} retries" if error.status_code >= 500 else ""
            raise BackendError(
                f"openai backend: {where} answered {error.status_code}{retried} for model {config.model!r}: "
                f"{self._server_message(error)}"
            ) from None
        if not response.choices:
            raise BackendError(f"openai backend: {where} returned no choices for model {config.model!r}")
        return response.choices[0].message.content or ""


class OpenAIPerceiver(VLMPerceiver):
    """The "openai" backend: VLMPerceiver over an OpenAI-compatible server."""

    def __init__(self, config: OpenAIConfig, http_client: Any = None) -> None:
        super().__init__(OpenAIChat(config, http_client), config, "openai")
