"""The provenance block of every result JSON (agent/core/provenance.py): its fields, git outside a checkout, and the
JSONs of `mstt theory`, `mstt bench collect` and `mstt offline` carrying it with no absolute path, and a command naming
the checkout as it was when the command started. The JSONs that need a trained transfer run (eval, run, bench
plan/tokens) are checked in tests/e2e/test_result_provenance.py."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

import mstt.agent.core.provenance as provenance_module
import mstt.agent.experiments.offline as offline_module
from mstt.agent.cli import main
from mstt.agent.core.provenance import NUMERIC_LIBRARIES, git_state, portable_strings, provenance

from repo_paths import CONFIGS, ROOT
from result_checks import absolute_paths, provenance_problems, then_edit_checkout


@pytest.fixture
def fresh_git_cache() -> Iterator[None]:
    """git_state asks git once per folder and process: forget the answers around a test that changes git's world."""
    git_state.cache_clear()
    yield
    git_state.cache_clear()


def test_the_block_has_every_field() -> None:
    block = provenance({"a": 1}, {"experiment": 0, "eval": 3}, "cpu")
    assert provenance_problems({"provenance": block}) == []
    assert block["seeds"] == {"experiment": 0, "eval": 3} and block["device"] == "cpu"
    assert block["torch_threads"] >= 1 and block["host"]["cpu_count"] >= 1
    assert block["host"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_the_block_names_the_libraries_that_shape_the_numbers() -> None:
    libraries = provenance({}, {}, None)["libraries"]
    assert set(libraries) == set(NUMERIC_LIBRARIES)
    assert libraries["vector-quantize-pytorch"] == version("vector-quantize-pytorch")


def test_the_host_is_a_kind_not_a_name() -> None:
    host = provenance({}, {}, None)["host"]
    assert socket.gethostname() not in json.dumps(host)


@pytest.mark.usefixtures("fresh_git_cache")
def test_git_is_null_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provenance_module, "PACKAGE_DIR", tmp_path)
    assert provenance({}, {}, None)["git"] is None


@pytest.mark.usefixtures("fresh_git_cache")
def test_git_is_null_where_git_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert provenance({}, {}, None)["git"] is None


@pytest.mark.usefixtures("fresh_git_cache")
def test_git_names_the_checkout_commit() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    state = git_state(provenance_module.PACKAGE_DIR)
    assert state is not None and state["commit"] == head and isinstance(state["dirty"], bool)


def test_absolute_paths_become_portable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = {"inside": str(tmp_path / "configs" / "a.yaml"), "outside": ["/elsewhere/b.yaml"], "word": "cpu",
              "relative": "data/tiny"}  # fmt: skip
    assert portable_strings(config) == {
        "inside": "configs/a.yaml", "outside": ["b.yaml"], "word": "cpu", "relative": "data/tiny",
    }  # fmt: skip


def _written(path: Path) -> dict:
    result = json.loads(path.read_text())
    assert provenance_problems(result) == []
    assert absolute_paths(result) == []
    return result


def test_theory_json(tmp_path: Path) -> None:
    assert main(["theory", "--json", str(tmp_path / "theory.json")]) == 0
    result = _written(tmp_path / "theory.json")
    assert result["provenance"]["config"]["theory"]["seed"] == result["config"]["seed"]


def test_bench_collect_json(tmp_path: Path) -> None:
    out = tmp_path / "collect.json"
    assert main(["bench", "collect", str(CONFIGS / "maze/source.yaml"), "--transitions", "200", "--repeats", "1",
                 "--json", str(out)]) == 0  # fmt: skip
    result = _written(out)
    assert result["provenance"]["config"]["settings"]["transitions"] == 200


def _offline_bc(tmp_path: Path) -> Path:
    """`mstt offline` of the tiny config, BC alone, one episode; returns its JSON."""
    config = tmp_path / "offline.yaml"
    config.write_text(f"extends: {CONFIGS / 'offline/tiny.yaml'}\nsource: {CONFIGS / 'maze/umaze.yaml'}\n"
                      f"data: {{root: {tmp_path / 'data'}, transitions: 3000}}\n")  # fmt: skip
    out = tmp_path / "offline.json"
    assert main(["offline", str(config), "--run", str(tmp_path / "run"), "--methods", "bc", "--episodes", "1",
                 "--json", str(out), "--quiet"]) == 0  # fmt: skip
    return out


def test_offline_json(tmp_path: Path) -> None:
    result = _written(_offline_bc(tmp_path))
    block = result["provenance"]
    assert block["config"]["experiment"]["bc"]["steps"] == 30 and block["device"] == "cpu"
    assert block["seeds"] == {"experiment": 0, "eval": 0}


@pytest.mark.usefixtures("fresh_git_cache")
def test_a_command_names_the_checkout_it_started_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mstt offline` writes its JSON after training and evaluating; a checkout edited meanwhile (a long run beside
    other work) does not change the provenance, which names the code the process loaded."""
    state = {"dirty": False}

    def stand_in_git(folder: Path, *args: str) -> str | None:
        answers = {"rev-parse": "1" * 40, "check-ignore": None, "status": " M agent/cli.py" if state["dirty"] else ""}
        return answers[args[0]]

    monkeypatch.setattr(provenance_module, "_git", stand_in_git)
    monkeypatch.setattr(offline_module, "rollout", then_edit_checkout(offline_module.rollout, state))
    result = _written(_offline_bc(tmp_path))
    assert state["dirty"] and result["provenance"]["git"] == {"commit": "1" * 40, "dirty": False}
