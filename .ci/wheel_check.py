"""Run by .ci/wheel with the python of a venv where only the built wheel provides mstt, from a directory outside
the checkout: mstt imports from that venv, every prompt loads as package data, and the openai backend perceives
one frame of the packaged configs/maze/t1.yaml through a local OpenAI-compatible stub server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import distribution
from importlib.resources import files
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

import mstt  # noqa: E402
import mstt.agent  # noqa: E402
from mstt.agent.core.config import resolve_config_path  # noqa: E402
from mstt.agent.worlds import load_config, make_task  # noqa: E402
from mstt.perception import Scene, make_perceiver  # noqa: E402
from mstt.perception.prompts import PROMPTS_DIR, load_prompt, load_text  # noqa: E402

MODEL = "stub-vlm"
VENV = Path(sys.prefix).resolve()


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"wheel check: {message}")


def inside_venv(path: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(VENV)


def check_installed_from_the_wheel() -> None:
    for where in (*mstt.__path__, mstt.agent.__file__, PROMPTS_DIR, str(files("mstt.configs"))):
        check(inside_venv(where), f"{where} is not inside the fresh venv {VENV}: the checkout leaked in")
    dist = Path(str(distribution("mstt").locate_file("mstt")))
    check(inside_venv(dist), f"the mstt distribution found first is {dist}, not the wheel installed in {VENV}")


def check_every_prompt_loads() -> list[str]:
    names = sorted(Path(entry.name).stem for entry in files("mstt.prompts").iterdir() if entry.name.endswith(".txt"))
    for name in names:
        if load_text(name).startswith("["):  # a chat template ([system] / [user] turns), not a plain snippet
            load_prompt(name)
    for needed in ("route", "route_retry", "goal", "goal_retry", "frame_pixel", "scene_maze", "scene_fetch"):
        check(needed in names, f"no prompt {needed!r} in the installed package ({PROMPTS_DIR})")
    return names


def serve(answer: str) -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    """A chat-completions server that answers every request with ``answer``, recording the requests."""
    requests: list[dict[str, Any]] = []
    completion = json.dumps({
        "id": "chatcmpl-ci", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(completion)))
            self.end_headers()
            self.wfile.write(completion)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return httpd, requests


def check_openai_backend_perceives_a_frame() -> int:
    task = make_task(load_config(resolve_config_path("configs/maze/t1.yaml")))
    env = task.make_env(render_mode="rgb_array")
    try:
        env.reset(seed=0, options=task.reset_options())
        frame = task.render_frame(env)
    finally:
        env.close()
    scene = Scene.from_task(task)
    cells = task.layout.shortest_path(task.layout.start, task.layout.goal)
    route = scene.to_pixel(np.array([task.layout.cell_to_xy(c) for c in cells])).round(1).tolist()
    httpd, requests = serve(json.dumps({"points": route, "frame": "pixel"}))
    try:
        base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        config = {"model": MODEL, "base_url": base_url, "api_key_env": None, "max_retries": 0, "max_reprompts": 0}
        demo = make_perceiver("openai", config).perceive(frame, "go to the red ball", scene)
    finally:
        httpd.shutdown()
        httpd.server_close()
    check(len(requests) == 1, f"expected one request to the stub server, got {len(requests)}")
    check(demo.source == "vlm" and demo.variant == "t1", f"a demo of {demo.source}, variant {demo.variant}")
    check(len(demo.points) == len(route), f"the demo has {len(demo.points)} points, the answer had {len(route)}")
    return len(demo.points)


def main() -> None:
    check_installed_from_the_wheel()
    names = check_every_prompt_loads()
    points = check_openai_backend_perceives_a_frame()
    print(f"wheel check: mstt from {Path(mstt.agent.__file__).parent}; prompts {names}; "
          f"openai backend read a {points}-point demo off the t1 frame")  # fmt: skip


if __name__ == "__main__":
    main()
