"""Bad replies from a vision-language model server: whatever a real HTTP server on 127.0.0.1 sends the
openai backend (deep nesting, huge numbers, HTML pages, wrong shapes, huge bodies, error statuses), the
perceiver ends with an accepted demo, a re-prompt, or a PerceptionError / BackendError, nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstt.agent.core.camera import FreeCamera
from mstt.agent.worlds import load_config, make_task
from mstt.perception import BackendError, PerceptionError, Scene, make_perceiver
from mstt.perception.chat import MAX_JSON_DEPTH, MAX_REPLY_CHARS, json_nesting
from mstt.perception.openai_vlm import MAX_RESPONSE_BYTES
from mstt.perception.vlm import MAX_ROUTE_POINTS

from repo_paths import CONFIGS

KEY_ENV = "MSTT_TEST_BAD_REPLIES_KEY"
SECRET = "sk-bad-replies-5f4e3d2c1b0a-do-not-leak"
MODEL = "tiny-vlm"
INSTRUCTION = "touch the target without entering the left half of the table"
MAX_REPROMPTS = 1
FUZZ_EXAMPLES = 500
MAX_ERROR_CHARS = 5_000
"""A refusal quotes at most a few hundred characters of each reply, however big the reply was."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the local server."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    stall_s: float = 0.0
    """Seconds between the headers and the body: a server too slow to answer."""


@dataclass
class LocalServer:
    """A real HTTP server on 127.0.0.1, in a thread, answering every POST with `answer` and recording the
    requests (JSON bodies) and their headers."""

    answer: Answer = Answer(b"{}")
    requests: list[dict[str, Any]] = field(default_factory=list)
    request_headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                state.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                state.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                answer = state.answer
                self.send_response(answer.status)
                if answer.content_type:
                    self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.flush()
                time.sleep(answer.stall_s)
                try:
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as it should

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def completion_body(content: Any) -> bytes:
    """A chat-completions answer whose message content is `content` (normally text)."""
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    body = {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": MODEL, "choices": [choice]}
    return json.dumps(body).encode()


@cache
def fetch_scene() -> tuple[Scene, np.ndarray, list[list[float]]]:
    """A camera looking down at Fetch's table (160x160, no markers to segment: perceive stays cheap), a
    blank frame, and a route around the forbidden zone that the perceiver accepts."""
    task = make_task(load_config(CONFIGS / "fetch/zone.yaml"))
    camera = FreeCamera(
        lookat=(1.325, 0.75, 0.4), distance=1.2, azimuth=90.0, elevation=-90.0, fovy=45.0, width=160, height=160
    )
    start = np.array([1.342, 0.70, 0.535])
    scene = Scene.from_task(task, camera=camera).replace(start=start)
    around = scene.to_pixel(np.array([start, [1.55, 0.70, 0.535], [1.55, 0.95, 0.535], scene.goal]))
    return scene, np.full((160, 160, 3), 200, dtype=np.uint8), around.round(2).tolist()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def perceiver(server: LocalServer) -> Iterator[Any]:
    """One openai backend for the whole module, holding a key (so echoes of it can be checked)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, SECRET)
        config = {
            "model": MODEL, "base_url": server.base_url, "api_key_env": KEY_ENV, "max_retries": 0, "timeout": 5.0,
            "max_reprompts": MAX_REPROMPTS,
        }  # fmt: skip
        yield make_perceiver("openai", config)


def _perceive(perceiver: Any, server: LocalServer, answer: Answer) -> Any:
    server.answer = answer
    server.requests.clear()
    scene, frame, _ = fetch_scene()
    return perceiver.perceive(frame, INSTRUCTION, scene)


def _route(points: Any, frame: str = "pixel") -> str:
    return json.dumps({"points": points, "frame": frame})


# --- replies that must end as a re-prompt or a BackendError, not RecursionError, ValueError,
# --- AttributeError or UnicodeEncodeError


def test_deeply_nested_reply_is_refused_and_reprompted(perceiver: Any, server: LocalServer) -> None:
    with pytest.raises(PerceptionError) as info:
        _perceive(perceiver, server, Answer(completion_body("[" * 1000 + "]" * 1000)))
    assert len(server.requests) == 1 + MAX_REPROMPTS
    assert f"at most {MAX_JSON_DEPTH} levels" in info.value.reasons[0]


def test_integer_of_5000_digits_is_refused_and_reprompted(perceiver: Any, server: LocalServer) -> None:
    _, _, good = fetch_scene()
    reply = _route(good).replace(json.dumps(good[0][0]), "9" * 5000, 1)
    with pytest.raises(PerceptionError) as info:
        _perceive(perceiver, server, Answer(completion_body(reply)))
    assert len(server.requests) == 1 + MAX_REPROMPTS
    assert "cannot be read as JSON" in info.value.reasons[0] and "4300 digits" in info.value.reasons[0]


def test_html_page_with_status_200_is_a_backend_error(perceiver: Any, server: LocalServer) -> None:
    page = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
    with pytest.raises(BackendError) as info:
        _perceive(perceiver, server, Answer(page, content_type="text/html"))
    message = str(info.value)
    assert "not JSON" in message and "text/html" in message and "Welcome to nginx" in message
    assert "OpenAIConfig.base_url" in message


def test_key_with_a_non_ascii_character_is_malformed(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-caf\u00e9-0123456789"
    monkeypatch.setenv(KEY_ENV, key)
    config = {"model": MODEL, "base_url": server.base_url, "api_key_env": KEY_ENV, "max_retries": 0}
    server.requests.clear()
    with pytest.raises(BackendError, match=f"API key in \\${KEY_ENV} is malformed: character 7 of 18 is not ASCII"):
        _perceive(make_perceiver("openai", config), server, Answer(completion_body("")))
    assert not server.requests


# --- the caps themselves


def test_reply_over_the_size_cap_is_refused_and_cut_in_the_reprompt(perceiver: Any, server: LocalServer) -> None:
    _, _, good = fetch_scene()
    reply = _route(good) + " " * MAX_REPLY_CHARS  # valid JSON, but too long to be read
    with pytest.raises(PerceptionError) as info:
        _perceive(perceiver, server, Answer(completion_body(reply)))
    assert f"at most {MAX_REPLY_CHARS:,} are read" in info.value.reasons[0]
    echoed = server.requests[1]["messages"][2]
    assert echoed["role"] == "assistant" and len(echoed["content"]) == MAX_REPLY_CHARS


def test_route_over_the_point_cap_is_refused_by_the_schema(perceiver: Any, server: LocalServer) -> None:
    _, _, good = fetch_scene()
    many = [good[0]] * MAX_ROUTE_POINTS + good[1:]
    with pytest.raises(PerceptionError, match=f"at most {MAX_ROUTE_POINTS} items"):
        _perceive(perceiver, server, Answer(completion_body(_route(many))))


def test_body_over_the_byte_cap_or_nested_too_deep_is_a_backend_error(perceiver: Any, server: LocalServer) -> None:
    padded = b" " * MAX_RESPONSE_BYTES + completion_body("{}")
    with pytest.raises(BackendError, match=f"at most {MAX_RESPONSE_BYTES:,} are read"):
        _perceive(perceiver, server, Answer(padded))
    with pytest.raises(BackendError, match="nested 100,000 deep"):
        _perceive(perceiver, server, Answer(b"[" * 100_000))


def test_json_that_is_no_completion_names_what_is_missing(perceiver: Any, server: LocalServer) -> None:
    with pytest.raises(BackendError, match=r"not a chat completion .*\(choices: Field required\)"):
        _perceive(perceiver, server, Answer(b'{"object": "list", "data": []}'))
    with pytest.raises(BackendError, match=r"choices\.0\.message\.content: Input should be a valid string"):
        _perceive(perceiver, server, Answer(completion_body(5)))


# --- the nesting check, a pure function


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(JSON_VALUES, st.sampled_from(["{}", "]]", "[text] ", '"[[["']))
def test_json_nesting_is_the_depth_of_the_json_in_the_text(value: Any, prefix: str) -> None:
    """Brackets inside strings do not count, and closing brackets earlier in the text hide nothing."""
    depth = max(_depth(value), 1 if prefix in ("{}", "[text] ") else 0)
    assert json_nesting(prefix + json.dumps(value)) == depth


def test_json_nesting_is_linear_on_runs_of_escaped_quotes() -> None:
    """A backtracking string pattern takes minutes on this (each quote restarts a scan to the end)."""
    text = '"' + '\\"' * (MAX_RESPONSE_BYTES // 2)
    start = time.perf_counter()
    assert json_nesting(text + "[[") == 0  # an open string runs to the end of the text
    assert time.perf_counter() - start < 1.0


# --- the fuzz: any answer through the real backend and a real server


def _coordinate() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats().map(json.dumps),
        st.integers().map(str),
        st.integers(4_000, 6_000).map(lambda digits: "7" * digits),
        st.sampled_from(["1e999", "-0", '"12"', "null", "[]", "{}", "true", "[1, 2]"]),
    )


@st.composite
def _route_like(draw: st.DrawFn) -> str:
    """Text shaped like a route answer with anything in its slots."""
    pairs = draw(st.lists(st.tuples(_coordinate(), _coordinate()), max_size=MAX_ROUTE_POINTS + 20))
    frame = draw(st.sampled_from(['"pixel"', '"normalized"', '"polar"', "1", "null"]))
    extra = draw(st.sampled_from(["", ', "note": "ok"', ', "points": []']))
    return '{"points": [' + ", ".join(f"[{u}, {v}]" for u, v in pairs) + '], "frame": ' + frame + extra + "}"


@st.composite
def _near_good_route(draw: st.DrawFn) -> str:
    """The accepted route, moved a little or a lot, sometimes in the normalized frame."""
    _, _, good = fetch_scene()
    noise = draw(st.lists(st.tuples(st.floats(-40, 40), st.floats(-40, 40)), min_size=len(good), max_size=len(good)))
    scale = draw(st.sampled_from([0.0, 0.0, 0.05, 1.0]))
    points = [[u + scale * du, v + scale * dv] for (u, v), (du, dv) in zip(good, noise)]
    if draw(st.booleans()):
        return _route([[u / 160, v / 160] for u, v in points], "normalized")
    return _route(points)


REPLY_TEXTS = st.one_of(
    _near_good_route(),
    _near_good_route(),
    _route_like(),
    JSON_VALUES.map(json.dumps),
    st.text(st.characters(categories=["L", "N", "P", "S", "Z", "Cc", "Cs"]), max_size=300),
    st.integers(0, 5_000).map(lambda n: "[" * n + "]" * n),
    st.integers(0, 3_000).map(lambda n: '{"a": ' * n + "1" + "}" * n),
    st.integers(0, 5_000).map(lambda n: "[" * n),
    st.integers(MAX_REPLY_CHARS - 2, MAX_REPLY_CHARS + 5_000).map(lambda n: "x" * n),
    st.just(f"Your key is {SECRET}."),
)


@st.composite
def _reply_text(draw: st.DrawFn) -> str:
    text = draw(REPLY_TEXTS)
    wrapper = draw(st.sampled_from(["{}", "```json\n{}\n```", "Here is the route:\n```json\n{}\n```", "{} trailing"]))
    return wrapper.replace("{}", text, 1)


ERROR_BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps({"error": {"message": value}}).encode()),
    st.binary(max_size=200),
    st.integers(0, 5_000).map(lambda n: b"[" * n),
    st.just(json.dumps({"error": {"message": f"bad key {SECRET}"}}).encode()),
)

ANSWERS = st.one_of(
    _reply_text().map(lambda text: Answer(completion_body(text))),
    _reply_text().map(lambda text: Answer(completion_body(text))),
    _reply_text().map(lambda text: Answer(completion_body(text))),
    JSON_VALUES.map(lambda content: Answer(completion_body(content))),
    st.builds(
        Answer,
        body=st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300), ERROR_BODIES),
        content_type=st.sampled_from(["application/json", "text/html", "text/plain", "text/event-stream", ""]),
    ),
    st.builds(Answer, body=ERROR_BODIES, status=st.sampled_from([400, 401, 403, 404, 409, 422, 429, 500, 502, 503])),
    st.just(Answer(b" " * (MAX_RESPONSE_BYTES + 1))),
)


def test_every_answer_ends_as_a_demo_a_reprompt_or_a_clear_error(perceiver: Any, server: LocalServer) -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(ANSWERS)
    def one_answer(answer: Answer) -> None:
        try:
            demo = _perceive(perceiver, server, answer)
        except PerceptionError as error:
            # Refused, re-prompted (same answer again), refused: the budget is spent.
            assert len(server.requests) == 1 + MAX_REPROMPTS
            assert len(str(error)) < MAX_ERROR_CHARS and SECRET not in str(error)
            outcomes["re-prompted"] += 1
        except BackendError as error:
            assert len(server.requests) == 1
            assert len(str(error)) < MAX_ERROR_CHARS and SECRET not in str(error)
            outcomes["backend error"] += 1
        else:
            assert demo.source == "vlm" and len(server.requests) == 1
            outcomes["accepted"] += 1

    one_answer()
    assert sum(outcomes.values()) >= FUZZ_EXAMPLES
    assert set(outcomes) == {"accepted", "re-prompted", "backend error"}, outcomes
