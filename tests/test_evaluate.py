"""Evaluation statistics: the Wilson interval at the edges and in the middle."""

from __future__ import annotations

import pytest

from agent.evaluate import wilson_interval


def test_wilson_interval_is_exact_at_the_edges_and_contains_the_rate() -> None:
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi and lo == pytest.approx(0.299, abs=1e-3) and hi == pytest.approx(0.701, abs=1e-3)
    for successes in range(0, 101, 7):
        lo, hi = wilson_interval(successes, 100)
        assert 0.0 <= lo <= successes / 100 <= hi <= 1.0
