"""A house a user writes wrongly is refused at load time naming the file, the field and the value: rooms that
overlap, a doorway that leads nowhere, a goal object that does not exist, things placed in furniture or off the
floor; a demo through a closed doorway is refused naming the segment and the doorway."""

from __future__ import annotations

from pathlib import Path

import pytest

from mstt.agent.cli import main
from mstt.agent.core.config import ConfigError
from mstt.agent.core.demo import Demo
from mstt.agent.experiments.evaluate import check_demo
from mstt.agent.worlds import load_config, make_task

EXIT_USER_ERROR = 2
HOUSE = """task: house
name: two-rooms
variant: t
role: target
rooms:
  - {name: a, x: [0, 4], z: [0, 4]}
  - {name: b, x: %(b_x)s, z: [0, 4]}
doorways:
  - {rooms: %(door_rooms)s, at: %(door_at)s, width: %(door_width)s, closed: %(closed)s}
boxes:
  - {name: sofa, at: [1.0, 3.0], size: [1.0, 1.0]}
objects:
  - {name: red_ball, kind: ball, colour: red, at: %(ball_at)s}
start: {room: a, at: %(start_at)s, heading: 0}
goal: %(goal)s
episode_steps: 200
"""
GOOD = {
    "b_x": "[4, 8]", "door_rooms": "[a, b]", "door_at": "2.0", "door_width": "1.2", "closed": "false",
    "ball_at": "[6.0, 2.0]", "start_at": "[2.0, 1.0]", "goal": "red_ball",
}  # fmt: skip
CASES = {
    # name: (changed fields, the field and the value the error names)
    "rooms overlap": ({"b_x": "[3, 8]"}, "field 'rooms[1]' = 'b'", "overlaps rooms[0] 'a'"),
    "doorway between rooms that share no wall": (
        {"b_x": "[5, 8]", "ball_at": "[6.0, 2.0]"}, "field 'doorways[0].rooms' = ['a', 'b']", "leads nowhere"),
    "doorway off the shared wall": ({"door_at": "4.5"}, "field 'doorways[0].at' = 4.5", "leads nowhere"),
    "doorway to a room that does not exist": ({"door_rooms": "[a, c]"}, "field 'doorways[0].rooms[1]' = 'c'",
                                              "no room of that name"),
    "doorway narrower than the agent": ({"door_width": "0.7"}, "field 'doorways[0].width' = 0.7", "close the doorway"),
    "goal object that does not exist": ({"goal": "blue_key"}, "field 'goal' = 'blue_key'", "red_ball"),
    "object inside a box": ({"ball_at": "[1.2, 3.1]"}, "field 'objects[0].at' = [1.2, 3.1]", "box 'sofa'"),
    "start outside every room": ({"start_at": "[9.0, 1.0]"}, "field 'start.at' = [9.0, 1.0]", "outside every room"),
    "start inside a box": ({"start_at": "[1.0, 3.0]"}, "field 'start.at' = [1.0, 3.0]", "box 'sofa'"),
    "every route closed": ({"closed": "true"}, "field 'doorways' (closed: [0])", "no route from start"),
    "empty room extent": ({"b_x": "[8, 4]"}, "field 'rooms.1.x' = [8, 4]", "is empty"),
}  # fmt: skip


def _write(tmp_path: Path, **changes: str) -> Path:
    path = tmp_path / "house.yaml"
    path.write_text(HOUSE % {**GOOD, **changes})
    return path


def test_the_base_house_loads(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path)).goal == "red_ball"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_house_is_refused_naming_file_field_and_value(tmp_path: Path, case: str) -> None:
    changes, field, problem = CASES[case]
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and field in message and problem in message, message


def test_an_unknown_texture_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "house.yaml"
    path.write_text((HOUSE % GOOD).replace("{name: a, x: [0, 4]", "{name: a, floor: carpet, x: [0, 4]"))
    with pytest.raises(ConfigError, match=r"field 'rooms\[0\]\.floor' = 'carpet': not a MiniWorld texture.*'wood'"):
        load_config(path)


def test_the_command_line_refuses_overlapping_rooms_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, b_x="[3, 8]")
    assert main(["demo-make", str(path), "--out", str(tmp_path / "demo.json")]) == EXIT_USER_ERROR
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and str(path) in stderr and "field 'rooms[1]' = 'b'" in stderr
    assert not (tmp_path / "demo.json").exists()


def test_a_demo_through_a_closed_doorway_is_refused(configs: Path) -> None:
    blocked = make_task(load_config(configs / "house/blocked.yaml"))
    demo = Demo(task="house", name="three-routes-house", variant="blocked", source="vlm",
                points=[[2.5, 5.5], [4.5, 6.0], [10.0, 6.0], [14.5, 6.5]])  # fmt: skip
    expected = (r"demo door\.json: segment 2->3 from \[10\.0, 6\.0\] to \[14\.5, 6\.5\] passes through closed doorway "
                r"1 between 'living' and 'kitchen' \(field 'doorways\[1\]'\)")  # fmt: skip
    with pytest.raises(ValueError, match=expected):
        check_demo(demo, blocked, "door.json")
