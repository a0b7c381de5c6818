"""The CLI contract: exit 0 on success, 2 with one line for a user error (file, field, value), 1 with a traceback
only for a bug; `mstt --version` prints the installed version.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import mstt.agent.cli as cli
from mstt.agent.core.config import ConfigError
from mstt.agent.core.io import UnwritablePathError
from mstt.agent.worlds.data import DatasetMismatchError
from mstt.skills.training import DamagedCheckpointError

from repo_paths import CONFIGS


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mstt {version('mstt')}"


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_unknown_device_option_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, str(CONFIGS / "maze/tiny.yaml"), "--run", str(tmp_path / "run"), "--device", "tpu9"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --device" in err and "'tpu9' is not a device" in err
    assert not (tmp_path / "run").exists()


USER_ERRORS = [
    ConfigError("x.yaml: field 'a' = 1: bad"),
    DatasetMismatchError("dataset 'd' under /r was collected with dataset.transitions = 1 (the config asks for 2)"),
    DamagedCheckpointError("/r/.training/bc/objects.pt: damaged training checkpoint; delete /r/.training/bc"),
    UnwritablePathError("--out /ro: cannot write in /ro (Read-only file system)"),
    FileNotFoundError("/r is not a run folder"),
]


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda e: type(e).__name__)
def test_every_user_error_class_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    def fail(args: object) -> None:
        raise error

    monkeypatch.setattr(cli, "_theory", fail)
    assert cli.main(["theory"]) == 2
    err = capsys.readouterr().err
    assert err == f"mstt theory: error: {error}\n"


def test_a_bug_exits_1_with_a_traceback() -> None:
    """Anything that is not a user error keeps its traceback, so it gets reported and fixed."""
    code = "import sys, agent.cli as cli\ncli._theory = lambda args: {}['no such key']\nsys.exit(cli.main(['theory']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "KeyError: 'no such key'" in result.stderr
