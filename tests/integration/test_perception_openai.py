"""The openai backend against a local OpenAI-compatible server on 127.0.0.1 that answers from a script:
the request it sends, parsing, validation with re-prompts, retries, and errors that never leak the key.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from start_frames import variant_picture

from mstt.agent.core.camera import FreeCamera
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.maze import MazeTask
from mstt.perception import BackendError, GoalParseError, PerceptionError, Scene, make_perceiver, parse_goal
from mstt.perception.chat import decode_data_url
from mstt.perception.openai_vlm import OpenAIChat, OpenAIConfig

from repo_paths import CONFIGS

KEY_ENV = "MSTT_TEST_OPENAI_KEY"
SECRET = "sk-test-9f8e7d6c5b4a-do-not-leak"
MODEL = "tiny-vlm"


@dataclass
class ScriptedServer:
    """Answers POST /v1/chat/completions from `script` (status, body, headers), recording each request."""

    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def reply(self, text: str) -> None:
        self.script.append((200, _completion(text), {}))

    def fail(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.script.append((status, {"error": {"message": message, "type": "test", "code": status}}, headers or {}))


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    state = ScriptedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path != "/v1/chat/completions":
                status, payload, extra = 404, {"error": {"message": f"no route {self.path}"}}, {}
            elif state.script:
                status, payload, extra = state.script.pop(0)
            else:
                status, payload, extra = 500, {"error": {"message": "script exhausted"}}, {}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture(scope="module")
def t1(configs_dir: Path) -> tuple[MazeTask, Scene, np.ndarray]:
    task = make_task(load_config(configs_dir / "maze/t1.yaml"))
    env = task.make_env(render_mode="rgb_array")
    try:
        env.reset(seed=0, options=task.reset_options())
        frame = task.render_frame(env)
    finally:
        env.close()
    return task, Scene.from_task(task), frame


@pytest.fixture(scope="module")
def configs_dir() -> Path:
    return CONFIGS


def _config(server: ScriptedServer, **overrides: Any) -> dict[str, Any]:
    return {"model": MODEL, "base_url": server.base_url, "api_key_env": KEY_ENV, "max_retries": 0, **overrides}


def _good_route(task: MazeTask, scene: Scene) -> list[list[float]]:
    """The open route of T1 through its cells' centres, in pixels: what a good VLM would answer."""
    cells = task.layout.shortest_path(task.layout.start, task.layout.goal)
    return scene.to_pixel(np.array([task.layout.cell_to_xy(c) for c in cells])).round(1).tolist()


def _straight_route(scene: Scene) -> list[list[float]]:
    """Agent to goal in a straight line: through the walls."""
    return scene.to_pixel(np.array([scene.start, scene.goal])).round(1).tolist()


def _fenced(points: list[list[float]], frame: str = "pixel") -> str:
    return "Here is the route:\n```json\n" + json.dumps({"points": points, "frame": frame}) + "\n```"


def _text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part["type"] == "text")


def test_request_carries_model_image_and_prompt(server: ScriptedServer, api_key: str, t1: Any, tmp_path: Path) -> None:
    task, scene, frame = t1
    server.reply(_fenced(_good_route(task, scene)))
    perceiver = make_perceiver("openai", _config(server, overlay_dir=str(tmp_path)))
    demo = perceiver.perceive(frame, "go to the red ball", scene)

    assert len(server.requests) == 1
    request = server.requests[0]
    assert request["model"] == MODEL and request["temperature"] == 0.0
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"
    system, user = request["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    image_parts = [p for p in user["content"] if p["type"] == "image_url"]
    assert len(image_parts) == 1
    url = image_parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(np.asarray(decode_data_url(url)), frame)  # PNG is lossless
    prompt = _text_of(user)
    assert "go to the red ball" in prompt
    assert "480x480" in prompt and '"pixel"' in prompt  # the coordinate frame is stated
    assert '"points"' in prompt  # the schema's format instructions

    # The answer became a world-frame demo along the open (top) route, drawn and saved.
    assert demo.source == "vlm" and demo.variant == "t1" and demo.task == "maze"
    cells = {task.layout.xy_to_cell(p) for p in demo.positions}
    assert (1, 5) in cells and not cells & set(task.layout.blocked)
    assert perceiver.last_overlay is not None and perceiver.last_overlay.parent == tmp_path
    assert Image.open(perceiver.last_overlay).size == (480, 480)


def test_normalized_frame_is_converted(server: ScriptedServer, api_key: str, t1: Any) -> None:
    task, scene, frame = t1
    normalized = (np.array(_good_route(task, scene)) / 480.0).tolist()
    server.reply(json.dumps({"points": normalized, "frame": "normalized"}))
    demo = make_perceiver("openai", _config(server, frame="normalized")).perceive(frame, "go to the red ball", scene)
    assert "[0, 0] is the top-left corner" in _text_of(server.requests[0]["messages"][1])
    path = task.layout.shortest_path(task.layout.start, task.layout.goal)
    np.testing.assert_allclose(demo.positions, [task.layout.cell_to_xy(c) for c in path], atol=1e-3)


def test_reprompts_once_after_a_route_through_walls(server: ScriptedServer, api_key: str, t1: Any) -> None:
    task, scene, frame = t1
    bad = _fenced(_straight_route(scene.observe(frame)))
    server.reply(bad)
    server.reply(_fenced(_good_route(task, scene)))
    demo = make_perceiver("openai", _config(server, max_reprompts=1)).perceive(frame, "go to the red ball", scene)

    assert len(server.requests) == 2
    second = server.requests[1]["messages"]
    # The refused answer and the reasons were appended to the same conversation.
    assert second[:2] == server.requests[0]["messages"]
    assert second[2] == {"role": "assistant", "content": bad}
    retry = _text_of(second[3])
    assert second[3]["role"] == "user" and "refused" in retry
    assert "passes inside a wall" in retry
    assert len(demo.points) == len(_good_route(task, scene))


def test_raises_after_the_retry_budget(server: ScriptedServer, api_key: str, t1: Any, tmp_path: Path) -> None:
    task, scene, frame = t1
    server.reply("I cannot see a maze.")
    server.reply(_fenced(_straight_route(scene.observe(frame))))
    server.reply(_fenced([[1000.0, 5.0], [3.0, 4.0]]))
    perceiver = make_perceiver("openai", _config(server, max_reprompts=2, overlay_dir=str(tmp_path)))
    with pytest.raises(PerceptionError) as info:
        perceiver.perceive(frame, "go to the red ball", scene)
    assert len(server.requests) == 3
    message = str(info.value)
    assert "3 attempt(s)" in message
    assert any("attempt 1: the answer is not JSON" in r for r in info.value.reasons)
    assert any(r.startswith("attempt 2:") and "wall" in r for r in info.value.reasons)
    assert any(r.startswith("attempt 3:") and "outside the 480x480 image" in r for r in info.value.reasons)
    # The last refused route is drawn too, for the user to see what went wrong.
    assert perceiver.last_overlay is not None and "refused" in perceiver.last_overlay.name


def test_route_must_start_at_the_agent_and_end_at_the_target(server: ScriptedServer, api_key: str, t1: Any) -> None:
    task, scene, frame = t1
    route = _good_route(task, scene)
    server.reply(_fenced(route[:-3]))  # stops short of the goal
    with pytest.raises(PerceptionError, match="ends .* world units from the target"):
        make_perceiver("openai", _config(server, max_reprompts=0)).perceive(frame, "go to the red ball", scene)


def test_rate_limit_is_retried_with_backoff(server: ScriptedServer, api_key: str, t1: Any) -> None:
    task, scene, frame = t1
    server.fail(429, "slow down", {"retry-after-ms": "10"})
    server.fail(503, "overloaded", {"retry-after-ms": "10"})
    server.reply(_fenced(_good_route(task, scene)))
    demo = make_perceiver("openai", _config(server, max_retries=2)).perceive(frame, "go to the red ball", scene)
    assert len(server.requests) == 3 and demo.source == "vlm"


def test_rate_limit_after_retries_is_a_clear_error(server: ScriptedServer, api_key: str, t1: Any) -> None:
    _, scene, frame = t1
    for _ in range(2):
        server.fail(429, "slow down", {"retry-after-ms": "10"})
    with pytest.raises(BackendError, match=r"429 Too Many Requests after 1 retries"):
        make_perceiver("openai", _config(server, max_retries=1)).perceive(frame, "go to the red ball", scene)


def test_unauthorized_is_clear_and_never_shows_the_key(
    server: ScriptedServer, api_key: str, t1: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, scene, frame = t1
    server.fail(401, f"Incorrect API key provided: {SECRET}")
    perceiver = make_perceiver("openai", _config(server))
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError) as info:
        perceiver.perceive(frame, "go to the red ball", scene)
    assert caplog.records and SECRET not in caplog.text  # the client's debug logs ran, without the key
    assert "401" in str(info.value) and KEY_ENV in str(info.value)
    for text in (str(info.value), repr(info.value), repr(perceiver), repr(perceiver.chat)):
        assert SECRET not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unknown_model_is_clear(server: ScriptedServer, api_key: str, t1: Any) -> None:
    _, scene, frame = t1
    server.fail(404, f"The model 'no-such-model' does not exist (key {SECRET})")
    with pytest.raises(BackendError) as info:
        make_perceiver("openai", _config(server, model="no-such-model")).perceive(frame, "go to the red ball", scene)
    message = str(info.value)
    assert "no model 'no-such-model'" in message and "404" in message and "OpenAIConfig.model" in message
    assert SECRET not in message


def test_missing_key_and_unreachable_server(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(BackendError, match=f"{KEY_ENV} .* is not set"):
        make_perceiver("openai", _config(server))
    chat = OpenAIChat(OpenAIConfig(model=MODEL, base_url="http://127.0.0.1:9/v1", api_key_env=None, max_retries=0))
    with pytest.raises(BackendError, match="cannot connect"):
        chat.complete([])


def test_config_refuses_a_key_in_place_of_a_variable_name() -> None:
    for pasted in (SECRET, "AbC123xyz"):
        with pytest.raises(ValueError, match=r"OpenAIConfig.api_key_env must be the NAME") as info:
            OpenAIConfig(model=MODEL, api_key_env=pasted)
        assert pasted not in str(info.value)
    with pytest.raises(ValueError, match="OpenAIConfig.frame"):
        OpenAIConfig(model=MODEL, frame="polar")


def test_goal_from_an_llm_through_the_same_schema(server: ScriptedServer, api_key: str, t1: Any) -> None:
    _, scene, _ = t1
    chat = OpenAIChat(OpenAIConfig(model=MODEL, base_url=server.base_url, api_key_env=KEY_ENV, max_retries=0))
    server.reply('```json\n{"target": "cell", "cell": [0, 0]}\n```')  # a wall: re-prompted
    server.reply('{"target": "region", "region": "top-right", "avoid_regions": ["bottom-right"]}')
    goal = parse_goal("head for the upper right room and keep away from the lower right corner", scene, chat=chat)
    assert goal.kind == "region" and goal.cell is not None and goal.avoid[0].name == "bottom-right"
    assert "cell (0, 0) is a wall" in _text_of(server.requests[1]["messages"][-1])
    assert "top-right" in _text_of(server.requests[0]["messages"][-1])  # region names are offered

    server.reply('{"target": "unclear", "note": "no destination given"}')
    with pytest.raises(GoalParseError, match="no destination given"):
        parse_goal("dance", scene, chat=chat, max_reprompts=0)


def test_fetch_zone_route_is_checked_against_the_zone(server: ScriptedServer, api_key: str, configs_dir: Path) -> None:
    """A camera looking down at the table; a route through the forbidden zone is refused, one around it passes."""
    task = make_task(load_config(configs_dir / "fetch/zone.yaml"))
    camera = FreeCamera(
        lookat=(1.325, 0.75, 0.4), distance=1.2, azimuth=90.0, elevation=-90.0, fovy=45.0, width=160, height=160
    )
    start = np.array([1.342, 0.70, 0.535])
    scene = Scene.from_task(task, camera=camera).replace(start=start)
    frame = np.full((160, 160, 3), 200, dtype=np.uint8)
    goal = scene.goal
    through = scene.to_pixel(np.array([start, goal])).tolist()
    around = scene.to_pixel(np.array([start, [1.55, 0.70, 0.535], [1.55, 0.95, 0.535], goal])).tolist()
    server.reply(json.dumps({"points": through, "frame": "pixel"}))
    server.reply(json.dumps({"points": around, "frame": "pixel"}))
    demo = make_perceiver("openai", _config(server, max_reprompts=1)).perceive(
        frame, "touch the target without entering the left half of the table", scene
    )
    assert "inside the forbidden zone 1" in _text_of(server.requests[1]["messages"][-1])
    assert "zone 1 covers pixels" in _text_of(server.requests[0]["messages"][1])
    assert demo.task == "fetch" and len(demo.points[0]) == 3
    assert not task.violation(demo.positions).any()


HOUSE_ROUTE = [[2.5, 5.5], [3.0, 7.5], [3.0, 9.0], [13.5, 9.0], [13.5, 7.5], [14.5, 6.5]]
"""The blocked house from the bedroom to the red ball by the south hall (x, z metres): what a good VLM would draw."""


@pytest.fixture(scope="module")
def blocked_house(configs_dir: Path) -> tuple[Any, Scene, np.ndarray]:
    return variant_picture(configs_dir / "house/blocked.yaml")


def test_house_map_route_is_checked_against_its_closed_door(
    server: ScriptedServer, api_key: str, blocked_house: Any
) -> None:
    """The house map and its description go out; a straight line through the closed kitchen door is refused with
    that reason, and a route by the south hall becomes a floor (x, z) demo the house itself accepts."""
    task, scene, frame = blocked_house
    server.reply(_fenced(_straight_route(scene)))
    server.reply(_fenced(scene.to_pixel(np.array(HOUSE_ROUTE)).round(2).tolist()))
    demo = make_perceiver("openai", _config(server, max_reprompts=1)).perceive(frame, "go to the red ball", scene)

    user = server.requests[0]["messages"][1]
    url = next(p for p in user["content"] if p["type"] == "image_url")["image_url"]["url"]
    np.testing.assert_array_equal(np.asarray(decode_data_url(url)), frame)
    prompt = _text_of(user)
    assert "top-down map of a house" in prompt and "closed doorway between the living and the kitchen" in prompt
    assert "the red ball (at pixel (354, 297))" in prompt and "the wardrobe (pixels" in prompt
    retry = _text_of(server.requests[1]["messages"][-1])
    assert "passes through the closed doorway between the living and the kitchen" in retry
    assert demo.task == "house" and demo.source == "vlm"
    np.testing.assert_allclose(demo.positions, HOUSE_ROUTE, atol=0.01)
    assert task.check_path(demo.positions, []).refusal is None
