"""The perceiver every model backend shares: one prompt, one answer schema, one parser, one validation,
re-prompted with the reasons until the route passes. A backend only supplies the chat model.

The model answers {"points": [[u, v], ...], "frame": "pixel" | "normalized"} about the image; the points
go through the scene's calibration into world coordinates and become a Demo with source "vlm".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.output_parsers import PydanticOutputParser
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from mstt.agent.core.demo import Demo
from mstt.perception.chat import ChatModel, ask_structured, image_data_url
from mstt.perception.errors import PerceptionError, check_field, is_count, is_positive_number
from mstt.perception.goals import target_for
from mstt.perception.overlay import draw_demo, draw_route, overlay_path
from mstt.perception.prompts import load_prompt, load_text, scene_description
from mstt.perception.scene import Scene
from mstt.perception.validation import ENDPOINT_TOLERANCE, route_problems

Frame = Literal["pixel", "normalized"]
FRAMES: tuple[str, ...] = Frame.__args__
DEFAULT_MAX_REPROMPTS = 2
MAX_ROUTE_POINTS = 100
"""Most points a route may have: a maze route visits ~30 cells. Every segment is sampled along its length
when it is checked, so a longer answer is refused by the schema before it costs seconds to check."""


class RouteAnswer(BaseModel):
    """The answer every model backend must give: a polyline in the image."""

    model_config = ConfigDict(extra="forbid")

    points: list[tuple[float, float]] = Field(
        min_length=2,
        max_length=MAX_ROUTE_POINTS,
        description="the route from the agent to the target, in order, as [u, v] or [x, y] pairs",
    )
    frame: Frame = Field(
        description="'pixel': [u, v] pixels from the top-left corner; 'normalized': fractions of width and height"
    )


ROUTE_PARSER = PydanticOutputParser(pydantic_object=RouteAnswer)
"""Parses the model's reply into a RouteAnswer; takes bare or ```json fenced``` JSON."""


def answer_pixels(answer: RouteAnswer, image_size: tuple[int, int]) -> np.ndarray:
    """(K, 2) pixel coordinates of an answer, whichever frame it declared."""
    points = np.asarray(answer.points, dtype=np.float64)
    if answer.frame == "normalized":
        points = points * np.asarray(image_size, dtype=np.float64)
    return points


@dataclass(frozen=True, kw_only=True)
class VLMConfig:
    """What every model backend shares: prompts, coordinate frame, re-prompt budget, overlays."""

    frame: str = "pixel"
    """Coordinate frame the prompt asks for: 'pixel' ([u, v] pixels) or 'normalized' ([0, 1] fractions)."""
    max_reprompts: int = DEFAULT_MAX_REPROMPTS
    """Re-prompts (with the refusal reasons) after an invalid answer before PerceptionError."""
    endpoint_tolerance: float = ENDPOINT_TOLERANCE
    """World units the route's ends may lie from the agent and from the target."""
    prompt: str = "route"
    """Name of the route prompt in prompts/ (prompts/<name>.txt)."""
    retry_prompt: str = "route_retry"
    """Name of the prompt appended, with the reasons, when an answer is refused."""
    prompts_dir: str | None = None
    """Folder holding the prompts; None: the repository's prompts/."""
    overlay_dir: str | None = None
    """When set, every accepted demo and the last refused route are drawn over the image and saved here."""

    def __post_init__(self) -> None:
        cls = type(self).__name__
        check_field(cls, self.frame in FRAMES, "frame", self.frame, f"must be one of {list(FRAMES)}")
        reprompts, tolerance = self.max_reprompts, self.endpoint_tolerance
        check_field(cls, is_count(reprompts, 0), "max_reprompts", reprompts, "must be an integer >= 0")
        check_field(cls, is_positive_number(tolerance), "endpoint_tolerance", tolerance, "must be > 0")
        for field in ("prompt", "retry_prompt"):
            value = getattr(self, field)
            check_field(cls, isinstance(value, str) and bool(value), field, value, "must name a prompt file")


class VLMPerceiver:
    """A DemoPerceiver around any ChatModel that sees images (see perception.hf_vlm, perception.openai_vlm)."""

    source = "vlm"

    def __init__(self, chat: ChatModel, config: VLMConfig, name: str) -> None:
        self.chat, self.config, self.name = chat, config, name
        self.prompt = load_prompt(config.prompt, config.prompts_dir)
        self.retry = load_prompt(config.retry_prompt, config.prompts_dir)
        self.last_overlay: Path | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chat={self.chat!r}, config={self.config!r})"

    def perceive(self, image: Image.Image | np.ndarray, instruction: str, scene: Scene) -> Demo:
        config = self.config
        rgb = scene.as_frame(image)
        scene = scene.observe(rgb)
        goal = target_for(instruction, scene)
        width, height = scene.image_size
        frame_text = load_text(f"frame_{config.frame}", config.prompts_dir).format(width=width, height=height)
        messages = self.prompt.format_messages(
            image_url=image_data_url(rgb),
            instruction=instruction,
            scene_description=scene_description(scene, config.prompts_dir),
            frame_description=frame_text,
            format_instructions=ROUTE_PARSER.get_format_instructions(),
        )
        last: dict[str, Any] = {}

        def check(answer: RouteAnswer) -> list[str]:
            last["pixels"] = answer_pixels(answer, scene.image_size)
            last["problems"] = route_problems(
                last["pixels"], scene, goal.target, goal.avoid, config.endpoint_tolerance, target_region=goal.region
            )
            return last["problems"]

        self.last_overlay = None
        try:
            answer = ask_structured(
                self.chat,
                messages,
                ROUTE_PARSER,
                check,
                self.retry.partial(frame_description=frame_text),
                config.max_reprompts,
                f"{self.name} route for {scene.task} variant '{scene.variant}' ({goal.label})",
            )
        except PerceptionError:
            if config.overlay_dir is not None and "pixels" in last:
                self.last_overlay = draw_route(
                    rgb,
                    last["pixels"],
                    scene,
                    overlay_path(config.overlay_dir, scene.task, scene.variant, self.name, "refused"),
                    f"{scene.task} {scene.variant} | {self.name} | last refused answer",
                    last["problems"],
                )
            raise
        demo = Demo(
            task=scene.task,
            name=scene.name,
            variant=scene.variant,
            source="vlm",
            points=scene.to_world(answer_pixels(answer, scene.image_size)).tolist(),
        )
        if config.overlay_dir is not None:
            self.last_overlay = draw_demo(
                rgb, demo, scene, overlay_path(config.overlay_dir, scene.task, scene.variant, self.name, "demo")
            )
        return demo
