"""House goals from sentences (perception.house_goals) and the house's Scene, read from the configs without rendering:
colour + kind picks an object, 'in the far room' picks among several, 'without crossing the wet floor' avoids the
zone, a room goes to a free point of it, and an object the house lacks is refused naming the words."""

from __future__ import annotations

import numpy as np
import pytest

from mstt.agent.worlds import load_config, make_task
from mstt.perception import GoalParseError, Scene, parse_goal
from mstt.perception.geometry import SceneObject

from repo_paths import CONFIGS


def _scene(variant: str) -> Scene:
    return Scene.from_task(make_task(load_config(CONFIGS / f"house/{variant}.yaml")))


@pytest.fixture(scope="module")
def zone() -> Scene:
    return _scene("zone")


@pytest.fixture(scope="module")
def blocked() -> Scene:
    return _scene("blocked")


def test_scene_calibration_round_trips_on_the_floor(zone: Scene) -> None:
    points = np.array([[2.5, 5.5], [14.5, 6.5], [-0.5, 13.0]])
    np.testing.assert_allclose(zone.to_world(zone.to_pixel(points)), points, atol=1e-9)
    assert zone.image_size == (480, 480) and zone.pos_dim == 2


def test_scene_names_rooms_objects_furniture_zones(zone: Scene, blocked: Scene) -> None:
    assert {room.name for room in zone.rooms} >= {"bedroom", "living", "kitchen", "north_hall", "south_hall"}
    red = zone.object_named("red_ball")
    assert (red.kind, red.colour) == ("ball", "red") and zone.room_of(np.array(red.position)) == "kitchen"
    assert [z.name for z in zone.zones] == ["wet_floor"] and not blocked.zones
    assert "wardrobe" in {box.name for box in blocked.furniture}
    closed = [door.rooms for door in blocked.doorways if door.closed]
    assert closed == [("living", "kitchen")]


def test_scene_forbids_furniture_and_crossing_a_closed_door(blocked: Scene) -> None:
    assert blocked.forbidden(np.array([[11.0, 3.0], [2.5, 5.5], [30.0, 5.0]])).tolist() == [True, False, True]
    assert "closed doorway between the living and the kitchen" in blocked.barrier_crossed([11.0, 6.0], [13.0, 6.0])
    assert blocked.barrier_crossed([2.5, 5.5], [5.0, 6.0]) is None  # through the open bedroom doorway


def test_colour_and_kind_pick_the_object(zone: Scene) -> None:
    goal = parse_goal("go to the red ball", zone)
    assert goal.kind == "object" and goal.position == (14.5, 6.5) and goal.label == "the red ball in the kitchen"
    assert parse_goal("Find the yellow key.", zone).position == (8.0, 9.0)


def test_far_room_picks_the_object_farthest_from_the_agent(zone: Scene) -> None:
    near = SceneObject(name="red_ball_2", kind="ball", colour="red", position=(3.0, 7.0))  # in the agent's bedroom
    scene = zone.replace(objects=(*zone.objects, near))
    assert parse_goal("go to the red ball in the far room", scene).position == (14.5, 6.5)
    assert parse_goal("go to the red ball in the nearest room", scene).position == (3.0, 7.0)
    assert parse_goal("go to the red ball in the bedroom", scene).position == (3.0, 7.0)
    with pytest.raises(GoalParseError, match="could mean 2 objects"):
        parse_goal("go to the red ball", scene)


def test_without_crossing_a_zone_avoids_it(zone: Scene) -> None:
    goal = parse_goal("reach the blue box without crossing the wet floor", zone)
    assert goal.position == (6.0, 0.5)
    assert [box.name for box in goal.avoid] == ["wet_floor"] and goal.constraints == ("avoid the wet floor",)
    assert [box.name for box in parse_goal("avoid the wet floor and go to the kitchen", zone).avoid] == ["wet_floor"]


def test_a_room_goes_to_a_free_point_near_its_centre(blocked: Scene) -> None:
    goal = parse_goal("go to the kitchen", blocked)
    assert goal.kind == "room" and goal.region is not None and goal.region.name == "kitchen"
    assert blocked.room_of(goal.target) == "kitchen" and not blocked.forbidden(goal.target[None])[0]
    assert np.linalg.norm(goal.target - np.array([14.0, 6.0])) < 0.5
    assert parse_goal("go to the far room", blocked).region.name == "pantry"  # type: ignore[union-attr]


def test_an_object_not_in_the_house_is_refused_naming_it(zone: Scene) -> None:
    with pytest.raises(GoalParseError) as info:
        parse_goal("find the green key", zone)
    message = str(info.value)
    assert "'green key'" in message and "the red ball, the green ball, the blue box" in message
    assert "\n" not in message
    with pytest.raises(GoalParseError, match="'unicorn'"):
        parse_goal("go to the unicorn", zone)
    with pytest.raises(GoalParseError, match="no 'red ball' in the study"):
        parse_goal("go to the red ball in the study", zone)


def test_maze_sentences_keep_their_meaning() -> None:
    maze = Scene.from_task(make_task(load_config(CONFIGS / "maze/t1.yaml")))
    goal = parse_goal("go to the red ball", maze)
    assert goal.kind == "marker" and np.allclose(goal.target, maze.goal)
