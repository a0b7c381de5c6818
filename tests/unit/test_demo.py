"""The observation-only demo format: round trip, and clear refusals of bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mstt.agent.core.demo import Demo
from mstt.agent.worlds import load_config, make_task


def _demo() -> Demo:
    return Demo(task="maze", name="x", variant="t1", source="vlm",
                points=[[0.0, 0.0], [0.5, 0.1], [1.0, 0.3]], timestamps=[0.0, 0.1, 0.2])  # fmt: skip


def test_round_trip(tmp_path: Path) -> None:
    demo = _demo()
    path = demo.save(tmp_path / "sub" / "d.json")
    assert Demo.load(path) == demo
    assert [p.name for p in path.parent.iterdir()] == ["d.json"]  # no temp file left


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"points": [[0.0, 0.0]]}, "at least 2 points"),
        ({"points": [[0.0, 0.0], [1.0]]}, "same dimension"),
        ({"timestamps": [0.0, 0.2, 0.1]}, "increase"),
        ({"timestamps": [0.0]}, "1 timestamps for 3 points"),
        ({"source": "dream"}, "source"),
    ],
)
def test_bad_demo_is_refused_naming_the_file(tmp_path: Path, change: dict, message: str) -> None:
    data = json.loads(_demo().model_dump_json()) | change
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        Demo.load(path)
    assert "bad.json" in str(err.value)


@pytest.mark.parametrize("variant", ["maze/t1", "maze/t2", "maze/t3", "fetch/zone"])
def test_shipped_demos_are_the_scripted_ones(configs: Path, variant: str) -> None:
    """configs/demos holds exactly what `mstt demo-make` writes today (deterministic expert)."""

    shipped = Demo.load(configs / "demos" / f"{variant.replace('/', '_')}.json")
    fresh = make_task(load_config(configs / f"{variant}.yaml")).scripted_demo()
    assert shipped.variant == fresh.variant
    np.testing.assert_allclose(shipped.positions, fresh.positions, atol=1e-9)
