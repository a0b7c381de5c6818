"""Perception: turns pixels and sentences into what the agent needs — an observation-only Demo read off
one picture of a changed world, a Goal from an instruction, and the agent's state from frames.

    make_perceiver(name, config).perceive(image, instruction, scene) -> mstt.agent.core.demo.Demo
        backends: 'geometric' (offline, no model; maze frames and house maps), 'hf' (local transformers
        VLM), 'openai' (any OpenAI-compatible server); prompts in prompts/, one answer schema, validation
        and re-prompts.
    draw_demo(image, demo, scene, path)          the demo drawn over the picture, as a PNG
    parse_goal(instruction, scene, chat=None)    -> Goal (rules offline, or an LLM; a house's objects and
                                                 rooms by name: perception.house_goals)
    estimate_position(frame, scene), PixelStateEstimator(scene, dt)
    Scene.from_task(task)                        calibration, map, start and goal of a task variant

The camera calibration lives in agent/core/camera.py. Model backends are imported only when built.
"""

from mstt.perception.base import DemoPerceiver
from mstt.perception.errors import BackendError, GoalParseError, PerceptionError
from mstt.perception.factory import available_perceivers, make_perceiver, perceiver_config
from mstt.perception.geometry import Box, MazeGrid
from mstt.perception.goals import Goal, GoalSpec, parse_goal
from mstt.perception.overlay import draw_demo
from mstt.perception.scene import Scene
from mstt.perception.state import PixelStateEstimator, estimate_position

__all__ = [
    "BackendError",
    "Box",
    "DemoPerceiver",
    "Goal",
    "GoalParseError",
    "GoalSpec",
    "MazeGrid",
    "PerceptionError",
    "PixelStateEstimator",
    "Scene",
    "available_perceivers",
    "draw_demo",
    "estimate_position",
    "make_perceiver",
    "parse_goal",
    "perceiver_config",
]
