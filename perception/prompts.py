"""Prompt templates, loaded by name from the prompts/ folder (package data `mstt.prompts`) as langchain-core templates.

A template file is plain text split into turns by lines `[system]`, `[user]` or `[assistant]`; a line
`<image>` in a user turn becomes an image_url part filled from the variable `image_url`. Variables are
written {name}; a literal brace is doubled. Every chat template ends with an optional `history`
placeholder, where re-prompts append the model's answer and the reasons it was refused.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

PROMPTS_DIR = Path(str(files("mstt.prompts")))
IMAGE_LINE = "<image>"
_TURN = re.compile(r"^\[(system|user|assistant)\]\s*$", re.MULTILINE)
_ROLE = {"system": "system", "user": "human", "assistant": "ai"}


def _path(name: str, directory: str | Path | None) -> Path:
    folder = Path(directory) if directory is not None else PROMPTS_DIR
    path = folder / f"{name}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        raise FileNotFoundError(f"no prompt '{name}' in {folder} (looked for {path.name}); known: {known}")
    return path


def load_text(name: str, directory: str | Path | None = None) -> str:
    """A plain text snippet (no turns), e.g. the description of a coordinate frame."""
    return _path(name, directory).read_text().strip()


def load_prompt(name: str, directory: str | Path | None = None) -> ChatPromptTemplate:
    """The chat template prompts/<name>.txt."""
    path = _path(name, directory)
    text = path.read_text()
    parts = _TURN.split(text)
    if parts[0].strip():
        raise ValueError(f"{path}: text before the first [system]/[user]/[assistant] line")
    messages: list[Any] = []
    for role, body in zip(parts[1::2], parts[2::2]):
        lines = body.strip("\n").splitlines()
        if IMAGE_LINE in (line.strip() for line in lines):
            if role != "user":
                raise ValueError(f"{path}: an {IMAGE_LINE} line is only allowed in a [user] turn")
            text_lines = [line for line in lines if line.strip() != IMAGE_LINE]
            content: Any = [
                {"type": "image_url", "image_url": {"url": "{image_url}"}},
                {"type": "text", "text": "\n".join(text_lines).strip()},
            ]
        else:
            content = "\n".join(lines).strip()
        messages.append((_ROLE[role], content))
    if not messages:
        raise ValueError(f"{path}: no [system]/[user]/[assistant] turn")
    messages.append(MessagesPlaceholder("history", optional=True))
    return ChatPromptTemplate.from_messages(messages)


def _at_pixel(scene: Any, point: Any) -> str:
    if point is None:
        return ""
    uv = scene.to_pixel(np.asarray(point, dtype=np.float64)[None])[0]
    return f" (at pixel ({uv[0]:.0f}, {uv[1]:.0f}))"


def _pixel_rect(scene: Any, box: Any) -> str:
    """A floor box as the pixel rectangle it covers in the picture."""
    low, high = np.array(box.low, dtype=np.float64), np.array(box.high, dtype=np.float64)
    corners = np.array([[x, y] for x in (low[0], high[0]) for y in (low[1], high[1])])
    uv = scene.to_pixel(corners)
    (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
    return f"pixels u {u0:.0f}-{u1:.0f}, v {v0:.0f}-{v1:.0f}"


def _maze_description(scene: Any, directory: str | Path | None) -> str:
    return load_text("scene_maze", directory).format(
        agent_at=_at_pixel(scene, scene.start), goal_at=_at_pixel(scene, scene.goal)
    )


def _fetch_description(scene: Any, directory: str | Path | None) -> str:
    zones = [f"{zone.name or 'a zone'} covers {_pixel_rect(scene, zone)}" for zone in scene.zones]
    goal_at = "" if scene.goal is None else "; the target" + _at_pixel(scene, np.r_[scene.goal[:2], scene.plane_z])
    return load_text(f"scene_{scene.task}", directory).format(
        goal_at=goal_at, zones="; ".join(zones) if zones else "none"
    )


def _spoken(name: str) -> str:
    return name.replace("_", " ")


def _house_description(scene: Any, directory: str | Path | None) -> str:
    rooms = [f"the {_spoken(room.name)} ({_pixel_rect(scene, room)})" for room in scene.rooms]
    doorways = [f"{door.label.removeprefix('the ')}{_at_pixel(scene, door.centre)}" for door in scene.doorways]
    furniture = [f"the {_spoken(box.name)} ({_pixel_rect(scene, box)})" for box in scene.furniture]
    objects = [f"{obj.label}{_at_pixel(scene, obj.position)}" for obj in scene.objects]
    zones = [f"the {_spoken(zone.name)} ({_pixel_rect(scene, zone)})" for zone in scene.zones]
    return load_text("scene_house", directory).format(
        agent_at=_at_pixel(scene, scene.start),
        agent_width=f"{2 * scene.agent_radius:g}",
        **{
            name: "; ".join(items) if items else "none"
            for name, items in (
                ("rooms", rooms), ("doorways", doorways), ("furniture", furniture), ("objects", objects),
                ("zones", zones),
            )
        },
    )  # fmt: skip


_DESCRIPTIONS = {"maze": _maze_description, "fetch": _fetch_description, "house": _house_description}
"""Task family -> the scene in words for a prompt (prompts/scene_<family>.txt filled in)."""


def scene_description(scene: Any, directory: str | Path | None = None) -> str:
    """The scene in words for a prompt (perception.scene.Scene): what the colours mean, where the agent,
    goal, forbidden zones (and a house's rooms, doorways, furniture and objects) are in the image's pixels."""
    if scene.task not in _DESCRIPTIONS:
        raise ValueError(f"no prompt describes a {scene.task} scene; known: {sorted(_DESCRIPTIONS)}")
    return _DESCRIPTIONS[scene.task](scene, directory)
