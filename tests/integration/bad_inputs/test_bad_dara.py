"""DARA's target datasets: a DARA config without its target dataset, or with a target dataset of another map, is
refused naming the experiment, the variant's config and the dataset; only DARA collects in a target world."""

from __future__ import annotations

from pathlib import Path

import pytest

from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.train import target_data
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.data import DatasetMismatchError, collect

from repo_paths import CONFIGS

SOURCE_STEPS = 6000
TARGET_STEPS = 600
"""10% of the tiny config's source data: what dara.shares [0.05, 0.1] asks for."""


def _experiment(tmp_path: Path, root: Path, target: Path, collect_if_missing: bool = False) -> Path:
    path = tmp_path / "exp.yaml"
    collecting = str(collect_if_missing).lower()
    path.write_text(
        f"extends: {CONFIGS / 'maze/tiny.yaml'}\nsource: {CONFIGS / 'maze/source.yaml'}\ntargets: [{target}]\n"
        f"demos: {{}}\ndata: {{root: {root}, transitions: {SOURCE_STEPS}, collect_if_missing: {collecting}}}\n"
    )
    return path


def test_a_missing_target_dataset_is_refused_naming_the_config_the_variant_and_the_dataset(tmp_path: Path) -> None:
    experiment = load_experiment(_experiment(tmp_path, tmp_path / "data", CONFIGS / "maze/t1.yaml"))
    with pytest.raises(FileNotFoundError) as err:
        target_data(experiment, "t1", progress=False)
    message = str(err.value)
    assert "exp.yaml" in message and "t1.yaml" in message and "mstt/maze-three-routes-t1-target-v0" in message
    assert "collect_if_missing is false" in message


def test_a_target_dataset_of_another_map_is_refused_naming_both(tmp_path: Path) -> None:
    root = tmp_path / "data"
    collect(make_task(load_config(CONFIGS / "maze/t1.yaml")), TARGET_STEPS, root, seed=1, progress=False,
            target_data=True)  # fmt: skip
    other = tmp_path / "t1_other.yaml"  # the same variant name with other walls: another map
    other.write_text(f"extends: {CONFIGS / 'maze/t1.yaml'}\nblocked: [[7, 6]]\n")
    experiment = load_experiment(_experiment(tmp_path, root, other))
    with pytest.raises(DatasetMismatchError) as err:
        target_data(experiment, "t1", progress=False)
    message = str(err.value)
    assert "exp.yaml" in message and "t1_other.yaml" in message and "blocked" in message


def test_the_matching_target_dataset_loads_and_is_collected_when_allowed(tmp_path: Path) -> None:
    experiment = load_experiment(_experiment(tmp_path, tmp_path / "data", CONFIGS / "maze/t1.yaml", True))
    episodes = target_data(experiment, "t1", progress=False)
    assert sum(len(e.actions) for e in episodes) == TARGET_STEPS
    assert target_data(experiment, "t1", progress=False)[0].observations.tolist() == episodes[0].observations.tolist()


def test_only_dara_collects_in_a_target_world(tmp_path: Path) -> None:
    task = make_task(load_config(CONFIGS / "maze/t1.yaml"))
    with pytest.raises(ValueError, match="only ever collected in the source world"):
        collect(task, 100, tmp_path, progress=False)
    with pytest.raises(ValueError, match="not a target world"):
        collect(make_task(load_config(CONFIGS / "maze/source.yaml")), 100, tmp_path, progress=False, target_data=True)
