"""Hub-ready runs (agent/experiments/hub.py, skills/checkpoint.py): a tiny run folder describes itself, loads by folder
and by Hub repo id from a local Hub cache (offline) with the same weights and the same eval, is refused under another
config and never trained into, and `mstt push` uploads it without its training state (HfApi stubbed)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import filter_repo_objects

from mstt.agent.experiments.hub import (
    CONFIG_FILE,
    RUN_FILE,
    TRAINING_DIR,
    hub_snapshot,
    resolve_run,
    run_files,
    write_card,
)
from mstt.agent.experiments.train import load_models
from mstt.skills.checkpoint import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from mstt.skills.tokenizer import SkillTokenizer

from tiny_experiment import run_cli, write_tiny_experiment

REPO_ID = "someone/tiny-maze"
REVISION = "0123456789abcdef0123456789abcdef01234567"
COMPONENTS = ("tokenizer", "critic", "generator", "bc", "dds_skills")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """(experiment file, trained run folder, its eval JSON loaded by folder), trained once for this module."""
    root = tmp_path_factory.mktemp("hub")
    experiment = write_tiny_experiment(root, str(root / "data"))
    run = root / "run"
    trained = run_cli(["train", str(experiment), "--run", str(run), "--device", "cpu", "--quiet"])
    assert trained.code == 0, trained.err
    evaluated = run_cli(["eval", str(experiment), "--run", str(run), "--json", str(root / "folder.json"), "--quiet"])
    assert evaluated.code == 0, evaluated.err
    return experiment, run, json.loads((root / "folder.json").read_text())


def lay_out_snapshot(cache: Path, repo_id: str, folder: Path, names: list[str]) -> Path:
    """``names`` of ``folder`` laid out as huggingface_hub's cache holds a downloaded repo:
    models--USER--NAME/{blobs/SHA256, refs/main, snapshots/REVISION/PATH -> ../../blobs/SHA256}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    for name in names:
        content = (folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: tuple[Path, Path, Any]) -> Iterator[Path]:
    """An offline Hub cache in tmp_path holding the tiny run as REPO_ID, as `mstt push` would upload it; yields its
    snapshot folder."""
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads both variables once, at import: set what it reads at call time too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    yield lay_out_snapshot(cache, REPO_ID, tiny[1], run_files(tiny[1]))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _without_provenance(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "provenance"}


# --- the run folder ----------------------------------------------------------------------------------------------


def test_run_folder_describes_itself(tiny: tuple[Path, Path, Any]) -> None:
    experiment, run, _ = tiny
    record = json.loads((run / RUN_FILE).read_text())
    assert set(record) >= {"fingerprint", "config", "task", "variant"} and record["task"] == "maze"
    config = yaml.safe_load((run / CONFIG_FILE).read_text())
    assert config["experiment"] == "mstt" and config["tokenizer"]["steps"] == 200  # configs/maze/tiny.yaml's
    assert config["data"]["transitions"] == 3000  # the tiny experiment's own override of what it extends
    card = (run / CARD_NAME).read_text()
    assert card.startswith("---\n") and "library_name: mstt" in card
    assert record["fingerprint"] in card and f"mstt eval {experiment.name} --run USER/NAME" in card
    for component in COMPONENTS:
        assert {p.name for p in (run / component).iterdir()} == {WEIGHTS_NAME, CONFIG_NAME, CARD_NAME}
        assert f"`{component}`" in card
    assert (run / TRAINING_DIR).is_dir()


def test_component_config_keeps_the_checkpoint_format(tiny: tuple[Path, Path, Any], tmp_path: Path) -> None:
    """config.json is format 1 as ever (so runs saved before the Hub mixin load), and the card is not needed."""
    run = tiny[1]
    meta = json.loads((run / "tokenizer" / CONFIG_NAME).read_text())
    assert set(meta) == {"format_version", "kind", "config", "extra"} and meta["format_version"] == 1
    bare = tmp_path / "tokenizer"
    shutil.copytree(run / "tokenizer", bare)
    (bare / CARD_NAME).unlink()
    loaded, original = SkillTokenizer.from_pretrained(bare), SkillTokenizer.from_pretrained(run / "tokenizer")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.state_dict().items())


def test_run_from_before_run_configs_gets_a_card(tiny: tuple[Path, Path, Any], tmp_path: Path) -> None:
    """A run folder as runs were saved before experiment.yaml and the card (run.json with fingerprint and config
    only) still gets a card to push."""
    old = tmp_path / "old"
    shutil.copytree(tiny[1], old, ignore=shutil.ignore_patterns(CONFIG_FILE, CARD_NAME))
    record = json.loads((old / RUN_FILE).read_text())
    (old / RUN_FILE).write_text(json.dumps({key: record[key] for key in ("fingerprint", "config")}))
    card = (write_card(old, REPO_ID)).read_text()
    assert f"predates `{CONFIG_FILE}`" in card and record["fingerprint"] in card and f"--run {REPO_ID}" in card
    assert CONFIG_FILE not in run_files(old) and CARD_NAME in run_files(old)


# --- loading through the Hub ---------------------------------------------------------------------------------------


def test_hub_run_loads_the_same_weights(tiny: tuple[Path, Path, Any], hub_cache: Path) -> None:
    run = tiny[1]
    resolved = resolve_run(REPO_ID)
    assert resolved == hub_cache and hub_snapshot(resolved) is not None
    assert hub_snapshot(resolved).repo_id == REPO_ID  # type: ignore[union-attr]
    by_folder, by_hub = load_models(run, device="cpu"), load_models(resolved, device="cpu")
    for component in ("tokenizer", "critic", "generator", "bc", "dds_skills"):
        expected, got = getattr(by_folder, component).state_dict(), getattr(by_hub, component).state_dict()
        assert expected.keys() == got.keys(), component
        assert all(torch.equal(expected[name], got[name]) for name in expected), component
    assert by_hub.stats == by_folder.stats


def test_eval_of_hub_run_equals_eval_of_folder(tiny: tuple[Path, Path, Any], hub_cache: Path, tmp_path: Path) -> None:
    experiment, _, by_folder = tiny
    before = _files(hub_cache)
    result = run_cli(["eval", str(experiment), "--run", REPO_ID, "--json", str(tmp_path / "hub.json"), "--quiet"])
    assert result.code == 0, result.err
    assert _without_provenance(json.loads((tmp_path / "hub.json").read_text())) == _without_provenance(by_folder)
    assert _files(hub_cache) == before  # used read-only


def test_hub_run_of_another_fingerprint_is_refused(tiny: tuple[Path, Path, Any], hub_cache: Path) -> None:
    result = run_cli(["eval", str(tiny[0]), "--run", REPO_ID, "--seed", "1", "--quiet"])
    assert result.code == 2
    assert "fingerprint" in result.err and "trained with config" in result.err


@pytest.mark.parametrize("named_by", ["repo id", "snapshot folder"])
def test_hub_run_is_never_trained_into(tiny: tuple[Path, Path, Any], hub_cache: Path, named_by: str) -> None:
    run_value = REPO_ID if named_by == "repo id" else str(hub_cache)
    before = _files(hub_cache)
    result = run_cli(["train", str(tiny[0]), "--run", run_value, "--quiet"])
    assert result.code == 2
    assert "read-only" in result.err and "never trained into" in result.err
    assert _files(hub_cache) == before
    assert not Path(REPO_ID).exists()


def test_one_component_loads_by_repo_id(tiny: tuple[Path, Path, Any], hub_cache: Path) -> None:
    folder = tiny[1] / "tokenizer"
    lay_out_snapshot(hub_cache.parents[2], "someone/tokenizer", folder, [WEIGHTS_NAME, CONFIG_NAME])
    loaded, original = SkillTokenizer.from_pretrained("someone/tokenizer"), SkillTokenizer.from_pretrained(folder)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.state_dict().items())


def test_missing_hub_run_is_a_clear_error(hub_cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="someone/absent.*Hugging Face Hub"):
        resolve_run("someone/absent")


# --- mstt push -----------------------------------------------------------------------------------------------------


def test_push_uploads_the_run_and_never_its_training_state(
    tiny: tuple[Path, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny[1], run)
    shutil.copy(tiny[1].parent / "folder.json", run / "eval.json")
    (run / "t1.png").write_bytes(b"not part of the run")
    calls: dict[str, Any] = {}

    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> Any:
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}
        return type("RepoUrl", (str,), {"repo_id": repo_id})(f"https://huggingface.co/{repo_id}")

    def upload_folder(self: HfApi, **kwargs: Any) -> str:
        calls["upload_folder"] = kwargs
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = run_cli(["push", str(run), "--repo-id", REPO_ID, "--private"])
    assert result.code == 0, result.err
    assert calls["create_repo"]["repo_id"] == REPO_ID and calls["create_repo"]["private"] is True
    upload = calls["upload_folder"]
    assert Path(upload["folder_path"]) == run and upload["repo_id"] == REPO_ID
    every_file = [p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()]
    assert any(name.startswith(f"{TRAINING_DIR}/") for name in every_file)  # there is training state to leave
    sent = set(filter_repo_objects(every_file, allow_patterns=upload["allow_patterns"],
                                   ignore_patterns=upload["ignore_patterns"]))  # fmt: skip
    assert not any(name.startswith(f"{TRAINING_DIR}/") for name in sent)
    assert "t1.png" not in sent
    expected = {CARD_NAME, CONFIG_FILE, RUN_FILE, "data.json", "eval.json"}
    expected |= {f"{c}/{f}" for c in COMPONENTS for f in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)}
    assert expected <= sent
    card = (run / CARD_NAME).read_text()
    assert f"--run {REPO_ID}" in card and "## Evaluation (`eval.json`)" in card and "| t1 | mstt |" in card


def test_component_push_to_hub_sends_its_checkpoint(
    tiny: tuple[Path, Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: dict[str, dict[str, bytes]] = {}

    def upload_folder(self: HfApi, **kwargs: Any) -> str:
        sent[kwargs["repo_id"]] = _files(Path(kwargs["folder_path"]))  # the mixin's temporary folder, read now
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: type("R", (str,), {"repo_id": repo_id})())
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    SkillTokenizer.from_pretrained(tiny[1] / "tokenizer").push_to_hub("someone/tokenizer")
    files = sent["someone/tokenizer"]
    assert set(files) == {WEIGHTS_NAME, CONFIG_NAME, CARD_NAME}
    assert files[CONFIG_NAME] == (tiny[1] / "tokenizer" / CONFIG_NAME).read_bytes()
    assert files[WEIGHTS_NAME] == (tiny[1] / "tokenizer" / WEIGHTS_NAME).read_bytes()
