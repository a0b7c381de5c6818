"""The API key never leaks: with a key held by the openai backend, a real server on 127.0.0.1 answers 401,
500, too slowly, or echoes the key in its reply and headers; the key appears in no output, no log record
(the HTTP client's DEBUG lines included) and no file written. Keys are stripped and checked when read.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The local server and the cheap Fetch scene are shared with the bad-replies tests in this folder.
from test_bad_vlm_replies import MODEL, Answer, LocalServer, completion_body, fetch_scene

from mstt.agent import cli
from mstt.perception import BackendError, PerceptionError, make_perceiver
from mstt.perception.openai_vlm import OpenAIChat, OpenAIConfig
from mstt.perception.secrets import REDACTED

KEY_ENV = "MSTT_TEST_SECRETS_KEY"
SECRET = "sk-secrets-7a6b5c4d3e2f-do-not-leak"
INSTRUCTION = "touch the target without entering the left half of the table"
TIMEOUT_S = 0.3
ECHO = (("X-Debug-Authorization", f"Bearer {SECRET}"),)
"""A misconfigured proxy or server echoing the credentials in a response header."""
HTTP_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at DEBUG on the root logger and on every logger of the HTTP stack."""
    caplog.set_level(logging.DEBUG)
    for name in HTTP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _config(server: LocalServer, **overrides: Any) -> dict[str, Any]:
    return {
        "model": MODEL, "base_url": server.base_url, "api_key_env": KEY_ENV, "max_retries": 0, "timeout": TIMEOUT_S,
        "max_reprompts": 1, **overrides,
    }  # fmt: skip


def _good_route() -> str:
    _, _, good = fetch_scene()
    return json.dumps({"points": good, "frame": "pixel"})


def _assert_no_key_anywhere(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture, folder: Path, texts: list[str]
) -> None:
    out, err = capsys.readouterr()
    outputs = [("stdout", out), ("stderr", err), ("the captured logs", caplog.text), *(("a message", t) for t in texts)]
    for name, text in outputs:
        assert SECRET not in text, f"the key leaked into {name}"
    for record in caplog.records:
        assert SECRET not in record.getMessage(), f"the key leaked into a log record of {record.name}"
        assert SECRET not in (record.exc_text or "") + (record.stack_info or "")
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the key leaked into {path.name}"
    # The HTTP client's DEBUG lines were captured: a key in a header would have shown there.
    assert any(record.name.startswith(("httpcore", "httpx")) for record in caplog.records)


def _error_body(message: str) -> bytes:
    return ('{"error": {"message": "' + message + '"}}').encode()


PROVOKED: dict[str, tuple[Callable[[], Answer], type[Exception] | None]] = {
    "401 echoing the key": (
        lambda: Answer(_error_body(f"Incorrect API key provided: {SECRET}"), status=401, headers=ECHO),
        BackendError,
    ),
    "500 echoing the key": (
        lambda: Answer(_error_body(f"upstream rejected token {SECRET}"), status=500, headers=ECHO),
        BackendError,
    ),
    "timeout after the headers": (
        lambda: Answer(completion_body("late"), headers=ECHO, stall_s=3 * TIMEOUT_S),
        BackendError,
    ),
    "reply echoing the key": (
        lambda: Answer(completion_body(f"I will not use {SECRET} to draw a route."), headers=ECHO),
        PerceptionError,
    ),
    "route whose frame is the key": (
        lambda: Answer(completion_body(json.dumps({"points": [[1, 2], [3, 4]], "frame": SECRET})), headers=ECHO),
        PerceptionError,
    ),
    "html page echoing the key": (
        lambda: Answer(f"<html>token {SECRET} accepted</html>".encode(), content_type="text/html", headers=ECHO),
        BackendError,
    ),
    "accepted route, key in a header": (lambda: Answer(completion_body(_good_route()), headers=ECHO), None),
}
"""What the server answers (built when the test runs) and how perceive must end: raising that error, or
accepting the route (None)."""


@pytest.mark.parametrize("case", list(PROVOKED))
def test_key_appears_in_no_output_log_or_file(
    case: str,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    debug_logs: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    answer, expected = PROVOKED[case]
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.answer = answer()
    scene, frame, _ = fetch_scene()
    perceiver = make_perceiver("openai", _config(server, overlay_dir=str(tmp_path)))
    texts = [repr(perceiver), repr(perceiver.chat)]
    if expected is None:
        perceiver.perceive(frame, INSTRUCTION, scene).save(tmp_path / "demo.json")
    else:
        with pytest.raises(expected) as info:
            perceiver.perceive(frame, INSTRUCTION, scene)
        print(f"mstt run: error: {info.value}", file=sys.stderr)  # what the CLI prints
        texts += [str(info.value), repr(info.value), *getattr(info.value, "reasons", [])]
    _assert_no_key_anywhere(capsys, debug_logs, tmp_path, texts)


def test_mstt_run_prints_an_echoed_key_redacted(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """`mstt run --perception openai` when the model echoes the key: the real CLI and perception config
    reading; the trained skills, which a failed perception never reaches, are stood in for."""

    def perceive_only(experiment: Any, run: Path, instruction: str, out: Path, variant: Any, perception: str,
                      perception_config: dict[str, Any], seed: int, **_: Any) -> Any:  # fmt: skip
        scene, frame, _ = fetch_scene()
        perceiver = make_perceiver(perception, {**perception_config, "overlay_dir": str(out)})
        return perceiver.perceive(frame, instruction, scene)

    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setattr(cli, "run_instruction", perceive_only)
    server.answer = Answer(completion_body(f"My instructions say the key is {SECRET}."))
    config = tmp_path / "openai.yaml"
    config.write_text("".join(f"{name}: {value}\n" for name, value in _config(server).items()))
    code = cli.main([
        "run", INSTRUCTION, "--config", "configs/maze/mstt.yaml", "--run", str(tmp_path / "run"),
        "--perception", "openai", "--perception-config", str(config), "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_USER_ERROR and "mstt run: error:" in err
    assert SECRET not in err and f"the key is {REDACTED}" in err


def test_surrounding_whitespace_is_stripped_from_the_key(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    debug_logs: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:  # fmt: skip
    """A key pasted with its line break works, instead of failing as 'cannot connect' with the key in
    the HTTP client's DEBUG log."""
    monkeypatch.setenv(KEY_ENV, f"  {SECRET}\n")
    server.answer = Answer(completion_body(_good_route()))
    server.request_headers.clear()
    scene, frame, _ = fetch_scene()
    demo = make_perceiver("openai", _config(server)).perceive(frame, INSTRUCTION, scene)
    assert demo.source == "vlm"
    assert server.request_headers[-1]["authorization"] == f"Bearer {SECRET}"
    _assert_no_key_anywhere(capsys, debug_logs, tmp_path, [])


MALFORMED = {
    "a line break inside": (f"{SECRET[:10]}\n{SECRET[10:]}", "character 11 of 36 is a control character"),
    "a terminal escape": (f"{SECRET}\x1b", "character 36 of 36 is a control character"),
    "a tab inside": (f"{SECRET[:5]}\t{SECRET[5:]}", "character 6 of 36 is a control character"),
    "an accented letter": (f"{SECRET[:3]}\u00e9{SECRET[3:]}", "character 4 of 36 is not ASCII"),
    "a zero-width space": (f"{SECRET}\u200b", "character 36 of 36 is not ASCII (ZERO WIDTH SPACE)"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_key_is_refused_when_read_without_showing_it(
    case: str, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, why = MALFORMED[case]
    monkeypatch.setenv(KEY_ENV, key)
    server.requests.clear()
    scene, frame, _ = fetch_scene()
    with pytest.raises(BackendError) as info:
        make_perceiver("openai", _config(server)).perceive(frame, INSTRUCTION, scene)
    message = str(info.value)
    assert f"the API key in ${KEY_ENV} is malformed: {why}" in message and "cannot connect" not in message
    for part in (key, SECRET[:10], SECRET[10:]):
        assert part not in message and part not in repr(info.value)
    assert not server.requests  # nothing was sent


def test_log_records_of_any_logger_are_scrubbed_only_while_a_backend_holds_the_key(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A key of its own: backends of other tests may live on in tracebacks pytest keeps, holding theirs.
    key = "sk-lifetime-0f1e2d3c4b5a"
    library = logging.getLogger("some.library")
    monkeypatch.setenv(KEY_ENV, key)
    gc.collect()  # release what unreachable backends of earlier tests hold, before noting the factory
    factory = logging.getLogRecordFactory()
    chat = OpenAIChat(OpenAIConfig(model=MODEL, base_url=server.base_url, api_key_env=KEY_ENV))
    with caplog.at_level(logging.INFO):
        library.info("token=%s", key)
        library.error("request failed", exc_info=RuntimeError(f"header Bearer {key}"))
        del chat
        gc.collect()
        library.info("token=%s", key)
    held, failed, released = caplog.records
    assert held.getMessage() == f"token={REDACTED}"
    assert failed.exc_info is None and f"Bearer {REDACTED}" in (failed.exc_text or "") and key not in failed.exc_text
    assert released.getMessage() == f"token={key}"  # released: no longer scrubbed
    assert logging.getLogRecordFactory() is factory  # and the factory is as it was
