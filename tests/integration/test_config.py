"""Config loading: every variant loads; bad input is refused naming the file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mstt.agent.core.config import ConfigError, FetchConfig, MazeConfig
from mstt.agent.worlds import load_config

from repo_paths import CONFIGS

ALL_VARIANTS = [
    "maze/source.yaml", "maze/t1.yaml", "maze/t2.yaml", "maze/t3.yaml",
    "maze/umaze.yaml", "maze/medium.yaml", "maze/large.yaml",
    "fetch/source.yaml", "fetch/zone.yaml",
]  # fmt: skip


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_every_shipped_config_loads(configs: Path, name: str) -> None:
    config = load_config(configs / name)
    assert isinstance(config, (MazeConfig, FetchConfig))


def test_target_variant_extends_source(configs: Path) -> None:
    t1 = load_config(configs / "maze/t1.yaml")
    source = load_config(configs / "maze/source.yaml")
    assert t1.rows == source.rows and t1.role == "target" and t1.blocked == [(7, 6), (9, 5)]


SOURCE_ROWS = load_config(CONFIGS / "maze/source.yaml").rows


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _maze_yaml(rows: list[str], extra: str = "") -> str:
    art = "\n".join(f"  - '{row}'" for row in rows)
    return f"task: maze\nname: x\nvariant: source\nrole: source\nrows:\n{art}\n{extra}"


@pytest.mark.parametrize(
    ("rows", "extra", "field", "value"),
    [
        (["#####", "#S.G", "#####"], "", "rows", "different lengths"),
        (["#####", "#SxG#", "#####"], "", "rows[1]", "'x'"),
        (["#####", "#S.G#", "#####"], "start: [0, 0]", "start", "[0, 0]"),
        (["#####", "#S#G#", "#####"], "", "blocked", "no route"),
        (["#####", "#S.G#", "#####"], "blocked: [[1, 2]]", "blocked", "[1, 2]"),
        (["#####", "#S.G#", "#####"], "episode_steps: -3", "episode_steps", "-3"),
        (["#####", "#S.G#", "#####"], "colour: red", "colour", "red"),
    ],
)
def test_bad_maze_is_refused_with_file_field_value(
    tmp_path: Path, rows: list[str], extra: str, field: str, value: str
) -> None:
    path = _write(tmp_path, _maze_yaml(rows, extra))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and field in message and value in message


def test_unknown_task_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "task: hopper\nname: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'task' = 'hopper'"):
        load_config(path)


def test_zone_outside_workspace_is_refused(tmp_path: Path) -> None:
    text = (
        "task: fetch\nname: x\nvariant: z\nrole: target\n"
        "zones:\n  - low: [1.2, 0.8, 0.1]\n    high: [1.4, 0.9, 0.6]\n"
    )
    with pytest.raises(ConfigError, match=r"zones\.0.*workspace") as err:
        load_config(_write(tmp_path, text))
    assert "bad.yaml" in str(err.value) and "0.1" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "task: [maze\n"))
