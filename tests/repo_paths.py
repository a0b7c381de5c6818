"""Where the repository's shared test inputs live, written once so that a test's folder depth (unit/,
integration/, e2e/, integration/bad_inputs/) never decides which configs it reads."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CONFIGS = ROOT / "configs"
TEST_DATA = TESTS / "data"
