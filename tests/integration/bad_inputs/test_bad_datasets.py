"""Dataset identity: a dataset records what shaped it (map, variant, size, noise, seed) and is refused, naming the
field, when an experiment asks for another; $MINARI_DATASETS_PATH is honoured where the config gives no data.root.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mstt.agent.cli import main
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.train import source_data
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.data import RECORD_KEY, DatasetMismatchError, collect, dataset_record, load_episodes

from repo_paths import CONFIGS

COLLECTED = 1200
"""Steps of the dataset every test here shares (two episodes of the source maze)."""


def _configs() -> Path:
    return CONFIGS


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datasets root holding the source maze's dataset, collected with COLLECTED steps (shared, never written)."""
    root = tmp_path_factory.mktemp("datasets")
    collect(make_task(load_config(_configs() / "maze/source.yaml")), COLLECTED, root, progress=False)
    return root


def _experiment(tmp_path: Path, root: Path, data: str = "", source: str = "") -> Path:
    """A tiny experiment over ``root`` whose source is the source maze with ``source`` appended."""
    configs = _configs()
    source_file = tmp_path / "source.yaml"
    source_file.write_text(f"extends: {configs / 'maze/source.yaml'}\n{source}")
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"extends: {configs / 'maze/tiny.yaml'}\nsource: {source_file}\ntargets: [{configs / 'maze/t1.yaml'}]\n"
        f"data: {{root: {root}, collect_if_missing: false, {data or f'transitions: {COLLECTED}'}}}\n"
    )
    return path


def test_a_collected_dataset_records_what_shaped_it(root: Path) -> None:
    metadata = json.loads((root / "mstt/maze-three-routes-v0/data/metadata.json").read_text())
    record = metadata[RECORD_KEY]
    assert record["dataset"]["transitions"] == COLLECTED and record["dataset"]["action_noise"] == 0.5
    assert record["variant"] == "source" and record["rows"][0] == "############" and record["blocked"] == []


def test_the_matching_experiment_loads_it(tmp_path: Path, root: Path) -> None:
    _, episodes = source_data(load_experiment(_experiment(tmp_path, root)), progress=False)
    assert sum(len(e.actions) for e in episodes) == COLLECTED


MISMATCHES = {
    # name: (data settings, source config lines, field named, recorded value, asked value)
    "size": ("transitions: 600", "", "dataset.transitions", "1200", "600"),
    "noise": ("", "dataset: {action_noise: 0.1}\n", "dataset.action_noise", "0.5", "0.1"),
    "seed": ("", "dataset: {seed: 7}\n", "dataset.seed", "0", "7"),
    "map": ("", "blocked: [[7, 6]]\n", "blocked", "[]", "[[7, 6]]"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_a_dataset_shaped_otherwise_is_refused_naming_the_field(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    data, source, field, have, want = MISMATCHES[case]
    path = _experiment(tmp_path, root, data, source)
    with pytest.raises(DatasetMismatchError) as err:
        source_data(load_experiment(path), progress=False)
    assert f"{field} = {have} (the config asks for {want})" in str(err.value)
    run = tmp_path / "run"
    assert main(["train", str(path), "--run", str(run), "--quiet"]) == 2
    assert field in capsys.readouterr().err
    assert not (run / "tokenizer").exists()


def test_a_dataset_without_a_record_is_checked_on_its_size(tmp_path: Path, root: Path) -> None:
    """Datasets collected before the record existed: their total steps still have to match."""
    old = tmp_path / "old"
    shutil.copytree(root, old)
    metadata_file = old / "mstt/maze-three-routes-v0/data/metadata.json"
    metadata = json.loads(metadata_file.read_text())
    del metadata[RECORD_KEY]
    metadata_file.write_text(json.dumps(metadata))
    task = make_task(load_config(_configs() / "maze/source.yaml"))
    assert len(load_episodes(task.dataset_id, old, dataset_record(task, COLLECTED))) == 2
    # noise is not recorded in such a dataset: only its size can be checked
    with pytest.raises(DatasetMismatchError, match=r"dataset\.transitions = 1200 \(the config asks for 6000\)"):
        load_episodes(task.dataset_id, old, dataset_record(task, 6000))


def _experiment_without_root(tmp_path: Path, root_line: str = "") -> Path:
    """An experiment file that does not extend tiny.yaml's data.root (the key is absent unless ``root_line``)."""
    configs = _configs()
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"experiment: mstt\nsource: {configs / 'maze/source.yaml'}\ntargets: [{configs / 'maze/t1.yaml'}]\n"
        f"data: {{transitions: 300{root_line}}}\n"
    )
    return path


def test_minari_datasets_path_is_honoured_without_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    source_data(load_experiment(_experiment_without_root(tmp_path)), progress=False)
    assert (tmp_path / "minari/mstt/maze-three-routes-v0/data/main_data.hdf5").exists()
    assert not (tmp_path / "data").exists()


def test_an_explicit_data_root_wins_over_minari_datasets_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    source_data(load_experiment(_experiment_without_root(tmp_path, ", root: mine")), progress=False)
    assert (tmp_path / "mine/mstt/maze-three-routes-v0").is_dir()
    assert not (tmp_path / "minari").exists()
