"""Keeps API keys out of everything perception shows or writes. A backend checks its key here when it
reads it, then holds it: until the backend is gone, `scrub` removes the key from reply texts and error
messages, and every log record of the process (the HTTP client's DEBUG lines included) is scrubbed too.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
import weakref
from collections import Counter
from typing import Any

REDACTED = "[redacted]"
"""What a key is replaced by, wherever it would have appeared."""
MIN_SCRUBBED_KEY_CHARS = 8
"""Keys shorter than this are placeholders for servers without authentication (vLLM's 'EMPTY', 'x'):
scrubbing them would garble replies and logs (a key '1' would eat every digit 1) and protect nothing."""

_lock = threading.RLock()
"""Re-entrant: the garbage collector can run a backend's release (a finalizer) in the middle of `hold`."""
_held: Counter[str] = Counter()
_forms: tuple[str, ...] = ()
"""Every held key as it may appear in text (raw, JSON-escaped, repr-escaped), longest first; replaced as a
whole tuple so the record factory, which runs on any thread, always sees a consistent set."""
_previous_factory: Any = None
_exception_text = logging.Formatter().formatException


def key_problem(key: str) -> str | None:
    """Why a (stripped) key cannot be a valid API key, without quoting it; None when it may be one.

    HTTP header values are ASCII without control characters: anything else would fail inside the HTTP
    client with an error that quotes the key (or be reported as a connection failure).
    """
    for position, char in enumerate(key, start=1):
        if not char.isascii():
            return f"character {position} of {len(key)} is not ASCII ({unicodedata.name(char, 'unnamed')})"
        if not char.isprintable():
            return f"character {position} of {len(key)} is a control character (a line break, tab or similar)"
    return None


def scrub(text: str) -> str:
    """`text` with every held key replaced by REDACTED."""
    for form in _forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def hold(owner: object, key: str) -> None:
    """Scrub `key` from replies, errors and all log records until `owner` is garbage collected."""
    if len(key) < MIN_SCRUBBED_KEY_CHARS:
        return
    with _lock:
        _held[key] += 1
        _refresh()
    weakref.finalize(owner, _release, key)


def _release(key: str) -> None:
    with _lock:
        _held[key] -= 1
        if _held[key] <= 0:
            del _held[key]
        _refresh()


def _refresh() -> None:
    """Recompute the scrubbed forms; install the record factory while any key is held, remove it after."""
    global _forms, _previous_factory
    held = list(_held)  # a snapshot: a release run by the garbage collector may change _held meanwhile
    forms = {form for key in held for form in (key, json.dumps(key)[1:-1], repr(key)[1:-1])}
    _forms = tuple(sorted(forms, key=len, reverse=True))
    if _held and _previous_factory is None:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_scrubbed_record)
    elif not _held and logging.getLogRecordFactory() is _scrubbed_record:
        logging.setLogRecordFactory(_previous_factory)
        _previous_factory = None
    # A factory installed after ours still chains to it: ours stays, scrubbing nothing until a key is held.


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """The log record factory while a key is held.

    A filter on the root logger would not do: Python consults a logger's filters only for records
    logged on that very logger, not for those propagated from 'httpx2', 'httpcore2' or 'openai' to the
    root's handlers. The factory sees every record of every logger as it is made.
    """
    factory = _previous_factory or logging.LogRecord
    record: logging.LogRecord = factory(*args, **kwargs)
    if not _forms:
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a factory must not raise; logging reports bad arguments itself
        return record
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info:
        # A traceback is only formatted by the handler: format it now, scrubbed, when it shows a key.
        text = _exception_text(record.exc_info)
        if scrub(text) != text:
            record.exc_text, record.exc_info = scrub(text), None
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


__all__ = ["MIN_SCRUBBED_KEY_CHARS", "REDACTED", "hold", "key_problem", "scrub"]
