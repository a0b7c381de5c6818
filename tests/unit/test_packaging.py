"""Packaging: the user's folders install under the one import name `mstt`, configs and prompts ship as package data
read through importlib.resources, and a command-line config path `configs/...` finds the packaged file from any
directory. .ci/wheel checks the same on a built wheel installed into a fresh venv."""

from __future__ import annotations

import argparse
import importlib
import tomllib
from importlib.metadata import entry_points, version
from importlib.resources import files
from pathlib import Path

import pytest

from mstt.agent import cli
from mstt.agent.core.config import ConfigError, packaged_configs, resolve_config_path
from mstt.agent.core.demo import Demo
from mstt.agent.worlds import load_config
from mstt.perception.prompts import load_prompt, load_text

from repo_paths import ROOT

SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGE_DIRS: dict[str, str] = SETUPTOOLS["package-dir"]
"""Import name -> the user's top-level folder, e.g. 'mstt.agent' -> 'agent'."""


def _packages_on_disk() -> set[str]:
    found = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(ROOT / folder).parts]))
    return found


def test_package_dirs_map_every_user_folder_into_mstt() -> None:
    folders = ("agent", "perception", "skills", "prompts", "configs")
    assert PACKAGE_DIRS == {f"mstt.{folder}": folder for folder in folders}


def test_packages_list_names_every_folder_with_an_init_and_nothing_else() -> None:
    listed = set(SETUPTOOLS["packages"])
    assert sorted(_packages_on_disk() - listed) == [], "package folders the wheel would leave out"
    assert sorted(listed - _packages_on_disk()) == [], "listed packages with no folder"


@pytest.mark.parametrize("name", SETUPTOOLS["packages"])
def test_every_listed_package_imports_from_its_folder(name: str) -> None:
    module = importlib.import_module(name)
    top, _, rest = name.partition(".")
    folder = PACKAGE_DIRS[f"{top}.{rest.split('.')[0]}"]
    assert Path(module.__file__).resolve().parent == (ROOT / folder).joinpath(*rest.split(".")[1:]).resolve()


def test_mstt_is_one_import_name_without_a_module_of_its_own() -> None:
    mstt = importlib.import_module("mstt")
    assert getattr(mstt, "__file__", None) is None  # a namespace package: only mstt.* hold code


@pytest.mark.parametrize("package", ["mstt.prompts", "mstt.configs"])
def test_package_data_globs_ship_every_data_file(package: str) -> None:
    folder = ROOT / PACKAGE_DIRS[package]
    data = {p for p in folder.rglob("*") if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts}
    shipped = {p for pattern in SETUPTOOLS["package-data"][package] for p in folder.glob(pattern)}
    assert sorted(str(p.relative_to(folder)) for p in data - shipped) == []


def test_the_demos_ship_in_the_configs_package() -> None:
    demos = sorted(p.name for p in (packaged_configs() / "demos").glob("*.json"))
    assert {"maze_t1.json", "maze_t2.json", "maze_t3.json", "fetch_zone.json"} <= set(demos)


def test_the_console_script_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    (script,) = entry_points(group="console_scripts", name="mstt")
    assert script.value == "mstt.agent.cli:main"
    with pytest.raises(SystemExit) as exit_:
        script.load()(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mstt {version('mstt')}"


PROMPTS = sorted(Path(entry.name).stem for entry in files("mstt.prompts").iterdir() if entry.name.endswith(".txt"))


@pytest.mark.parametrize("name", PROMPTS)
def test_every_prompt_loads_through_importlib_resources(name: str) -> None:
    text = load_text(name)
    assert text
    if text.startswith("["):  # a chat template ([system] / [user] turns), not a plain snippet
        assert load_prompt(name).messages


def test_a_packaged_config_is_found_from_another_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    path = resolve_config_path("configs/maze/t1.yaml")
    assert path == packaged_configs() / "maze" / "t1.yaml"
    config = load_config(path)  # `extends: source.yaml` resolves beside the packaged file
    assert config.variant == "t1"
    assert resolve_config_path("configs/demos/maze_t1.json") == packaged_configs() / "demos" / "maze_t1.json"


def test_a_file_in_the_working_directory_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "configs" / "maze").mkdir(parents=True)
    (tmp_path / "configs" / "maze" / "t1.yaml").write_text("task: maze\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("configs/maze/t1.yaml") == Path("configs/maze/t1.yaml")


@pytest.mark.parametrize(
    ("path", "looked_in_package"), [("configs/maze/no_such.yaml", True), ("mine/no_such.yaml", False)]
)
def test_a_missing_config_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: str, looked_in_package: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve_config_path(path)
    message = str(info.value)
    assert message.startswith(f"{path}: file not found") and str(tmp_path) in message
    assert ("installed package's configs" in message) == looked_in_package


def test_the_cli_resolves_a_packaged_config_from_another_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo-make", "configs/maze/t1.yaml", "--out", "demo.json"]) == 0
    assert Demo.load(tmp_path / "demo.json").variant == "t1"
    assert cli.main(["render", "configs/maze/no_such.yaml", "--out", "x.png"]) == 2
    assert "configs/maze/no_such.yaml: file not found" in capsys.readouterr().err


def _subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {inner}": p for inner, p in _subcommand_parsers(sub).items()})
    return found


@pytest.mark.parametrize("command", sorted(_subcommand_parsers(cli.build_parser())))
def test_every_input_file_argument_is_resolved(command: str) -> None:
    """A config, perception config or demo argument of any sub-command goes through resolve_config_path."""
    parser = _subcommand_parsers(cli.build_parser())[command]
    inputs = {a.dest for a in parser._actions if "config" in a.dest or a.dest == "demo"}
    assert inputs <= set(cli.INPUT_FILE_OPTIONS)
