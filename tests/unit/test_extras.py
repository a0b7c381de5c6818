"""The optional dependencies (pyproject's extras) stay optional: starting the `mstt` command imports none of them, so
an install without an extra runs every command that does not ask for it."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from repo_paths import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRA_MODULES = {"vlm": ("transformers", "openai"), "track": ("tensorboard",), "wandb": ("wandb",)}
"""extra -> the import names of what it installs."""


def test_every_extra_but_test_is_listed_with_its_import_names() -> None:
    assert set(PROJECT["optional-dependencies"]) - {"test"} == set(EXTRA_MODULES)


def test_starting_the_cli_imports_nothing_from_an_extra() -> None:
    names = sorted(m for modules in EXTRA_MODULES.values() for m in modules)
    check = f"import sys, mstt.agent.cli; print(' '.join(m for m in {names!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=300)
    imported = run.stdout.split()
    assert {extra: [m for m in modules if m in imported] for extra, modules in EXTRA_MODULES.items()} == {
        extra: [] for extra in EXTRA_MODULES
    }, "`mstt` imports these extras' packages at start-up: make them core dependencies or import them by name"


def test_the_test_extra_installs_the_optional_backends_its_tests_use() -> None:
    (own,) = [dep for dep in PROJECT["optional-dependencies"]["test"] if dep.startswith("mstt[")]
    assert {"vlm", "track"} <= set(own.removeprefix("mstt[").removesuffix("]").split(","))
