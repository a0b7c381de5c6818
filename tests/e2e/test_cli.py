"""The `mstt` command line end to end on tiny sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mstt.agent.cli import main
from mstt.agent.core.demo import Demo


def test_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mstt.agent.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("collect", "demo-make", "render", "theory"):
        assert command in out


def test_collect_demo_render(configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["collect", str(configs / "maze/source.yaml"), "--out", str(tmp_path / "data"),
                 "--transitions", "1500", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "transitions   1,500" in out and "episodes      2" in out
    assert main(["demo-make", str(configs / "maze/t2.yaml"), "--out", str(tmp_path / "t2.json")]) == 0
    demo = Demo.load(tmp_path / "t2.json")
    assert demo.variant == "t2" and demo.source == "scripted"
    assert main(["render", str(configs / "maze/t2.yaml"), "--out", str(tmp_path / "t2.png")]) == 0
    assert (tmp_path / "t2.png").stat().st_size > 1000


def test_user_errors_exit_2_with_message(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["collect", str(configs / "maze/t1.yaml"), "--out", str(tmp_path)]) == 2
    assert "source world" in capsys.readouterr().err
    assert main(["demo-make", str(tmp_path / "missing.yaml"), "--out", "x.json"]) == 2
    assert "file not found" in capsys.readouterr().err
