"""Every YAML under configs/ loads and validates with its own loader; command-line overrides (--seed, --set,
--ablation) change a config exactly like editing the file would, and are refused like the file with one line that
names the override.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mstt.agent import cli
from mstt.agent.cli import main
from mstt.agent.core.config import (
    ABLATIONS_FILE,
    ConfigError,
    FetchConfig,
    HouseConfig,
    MazeConfig,
    _read_yaml,
    command_line_overrides,
    load_ablations,
)
from mstt.agent.experiments.experiment import Experiment, load_experiment
from mstt.agent.experiments.offline import OfflineExperiment, load_offline_experiment
from mstt.agent.experiments.train import RUN_FILE
from mstt.agent.worlds import load_config  # fmt: skip

from repo_paths import CONFIGS

ALL_YAML = sorted(str(path.relative_to(CONFIGS)) for path in CONFIGS.rglob("*.yaml"))
EXPERIMENT_LOADERS: dict[str, Callable[..., Experiment | OfflineExperiment]] = {
    "mstt": load_experiment, "offline": load_offline_experiment,
}  # fmt: skip
EXIT_USER_ERROR = 2

BENCHMARK_FINGERPRINTS = {
    "maze/mstt.yaml": "0267094070c1babf",
    "maze/new_tasks.yaml": "0267094070c1babf",  # evaluates the run folders of maze/mstt.yaml
    "fetch/mstt.yaml": "59a2b0af2d4ca5e8",
    "fetch/random_starts.yaml": "59a2b0af2d4ca5e8",  # evaluates the run folders of fetch/mstt.yaml
    "fetch/new_tasks.yaml": "59a2b0af2d4ca5e8",
}
"""The run folders behind BENCHMARKS.md were trained under these; another fingerprint makes them all refuse the
config (`mstt eval` asks to retrain)."""


def _kind(name: str) -> str:
    if Path(name).name == ABLATIONS_FILE:
        return "ablations"
    data = _read_yaml(CONFIGS / name)
    if "experiment" in data:
        return str(data["experiment"])
    return "variant" if "task" in data else "unknown"


def _experiments_beside(name: str) -> list[Path]:
    folder = (CONFIGS / name).parent
    return [path for path in sorted(folder.glob("*.yaml"))
            if _kind(str(path.relative_to(CONFIGS))) in EXPERIMENT_LOADERS]  # fmt: skip


def _load(path: Path, **options: Any) -> Experiment | OfflineExperiment:
    loader = EXPERIMENT_LOADERS[_read_yaml(path)["experiment"]]
    return loader(path, command_line_overrides(path, **options))


@pytest.mark.parametrize("name", ALL_YAML)
def test_every_yaml_under_configs_loads_with_its_loader(name: str) -> None:
    kind = _kind(name)
    if kind == "variant":
        assert isinstance(load_config(CONFIGS / name), (MazeConfig, FetchConfig, HouseConfig))
    elif kind in EXPERIMENT_LOADERS:
        experiment = EXPERIMENT_LOADERS[kind](CONFIGS / name)
        assert len(experiment.fingerprint()) == 16 and experiment.overrides == ()
    elif kind == "ablations":
        ablations = load_ablations(CONFIGS / name)
        experiments = _experiments_beside(name)
        assert ablations and experiments, f"{name}: an ablations file needs experiment configs beside it"
        for ablation in ablations:  # each applies to every experiment of its family
            for path in experiments:
                assert _load(path, ablation=ablation).overrides == (f"--ablation {ablation}",)
    else:
        pytest.fail(f"configs/{name} is neither a variant, an experiment nor an ablations file: give it a loader here")


@pytest.mark.parametrize("name", sorted(BENCHMARK_FINGERPRINTS))
def test_benchmark_configs_keep_their_fingerprints(name: str) -> None:
    assert load_experiment(CONFIGS / name).fingerprint() == BENCHMARK_FINGERPRINTS[name]


def test_quick_extends_mstt_with_t1_only() -> None:
    quick, full = load_experiment(CONFIGS / "maze/quick.yaml"), load_experiment(CONFIGS / "maze/mstt.yaml")
    assert list(quick.targets) == ["t1"] and list(quick.demo_files) == ["t1"]  # demos: !replace, not merged
    assert quick.config.planner == full.config.planner and quick.config.generator == full.config.generator
    assert quick.config.data.transitions == 200_000 and quick.config.tokenizer.steps == 1500


# --- overrides: what they change ---------------------------------------------------------------------------------


def test_seed_sets_the_top_level_seed() -> None:
    base = load_experiment(CONFIGS / "maze/mstt.yaml")
    edited = replace(base, config=base.config.model_copy(update={"seed": 1}))  # as if the file said `seed: 1`
    with_seed = _load(CONFIGS / "maze/mstt.yaml", seed=1)
    assert with_seed.config == edited.config and with_seed.overrides == ("--seed 1",)
    assert with_seed.fingerprint() == edited.fingerprint() != base.fingerprint()


@pytest.mark.parametrize(
    ("setting", "field", "value", "retrains"),
    [
        ("planner.match_radius=0.1", ("planner", "match_radius"), 0.1, False),
        ("planner.match_radius=null", ("planner", "match_radius"), None, False),
        ("eval.methods=[mstt,bc]", ("eval", "methods"), ["mstt", "bc"], False),
        ("planner={score: token}", ("planner", "score"), "token", False),
        ("tokenizer.codebook_size=64", ("tokenizer", "codebook_size"), 64, True),
        ("critic.gamma=0.99", ("critic", "gamma"), 0.99, True),
    ],
)
def test_set_changes_the_field_and_the_fingerprint_where_it_should(
    setting: str, field: tuple[str, str], value: Any, retrains: bool
) -> None:
    base = load_experiment(CONFIGS / "maze/mstt.yaml")
    changed = _load(CONFIGS / "maze/mstt.yaml", sets=[setting])
    assert getattr(getattr(changed.config, field[0]), field[1]) == value
    assert (changed.fingerprint() != base.fingerprint()) == retrains
    assert changed.config.planner.n_candidates == base.config.planner.n_candidates  # a mapping merges, like extends


def test_a_later_override_wins() -> None:
    path = CONFIGS / "maze/mstt.yaml"
    assert _load(path, ablation="planner_no_match").config.planner.match_radius is None
    both = _load(path, ablation="planner_no_match", sets=["planner.match_radius=0.3"])
    assert both.config.planner.match_radius == 0.3 and both.config.eval.methods == ["mstt", "mask_only"]


@pytest.mark.parametrize("name", ["maze", "fetch", "offline"])
def test_only_training_ablations_change_the_fingerprint(name: str) -> None:
    """Planner and eval ablations evaluate the base config's run folders; the others need a run folder of their own."""
    for path in _experiments_beside(f"{name}/{ABLATIONS_FILE}"):
        base = _load(path).fingerprint()
        for ablation, spec in load_ablations(CONFIGS / name / ABLATIONS_FILE).items():
            evaluation_only = all(key.split(".")[0] in ("planner", "eval") for key in spec.set)
            assert (_load(path, ablation=ablation).fingerprint() == base) == evaluation_only, (path, ablation)


def test_offline_decoder_override_retrains() -> None:
    path = CONFIGS / "offline/umaze.yaml"
    mlp = _load(path, sets=["dds.decoder.kind=mlp"])
    assert mlp.config.dds.decoder.kind == "mlp" and mlp.fingerprint() != _load(path).fingerprint()
    assert mlp.fingerprint() == _load(path, ablation="mlp_decoder").fingerprint()


# --- overrides on the command line: errors ------------------------------------------------------------------------


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> str:
    assert main(argv) == EXIT_USER_ERROR
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith(f"mstt {argv[0]}: error: ")]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def _argv(command: str, config: Path, run: Path) -> list[str]:
    if command == "run":
        return ["run", "go to the goal", "--config", str(config), "--run", str(run), "--out", str(run.parent / "out")]
    return [*command.split(), str(config), "--run", str(run)]


TRAINED_COMMANDS = ["eval", "run", "bench plan", "bench tokens"]


@pytest.mark.parametrize("command", ["train", "offline", *TRAINED_COMMANDS])
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("planner.match_radius=abc", ["--set planner.match_radius=abc: field 'planner.match_radius' = 'abc'"]),
        ("eval.nope=1", ["--set eval.nope=1: field 'eval.nope' = 1"]),
        ("seed", ["--set seed: expected KEY=VALUE"]),
        ("eval.methods=[mstt,", ["--set 'eval.methods=[mstt,': the value is not valid YAML"]),
    ],
)
def test_a_bad_set_exits_2_naming_the_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str,
    setting: str, expected: list[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    config = CONFIGS / ("offline/tiny.yaml" if command == "offline" else "maze/tiny.yaml")
    if command == "offline" and setting.startswith("planner"):
        setting, expected = "dds.decoder.kind=abc", ["--set dds.decoder.kind=abc: field 'dds.decoder.kind' = 'abc'"]
    _refused(capsys, [*_argv(command, config, tmp_path / "run"), "--set", setting], *expected)
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_an_unknown_ablation_lists_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ablations = CONFIGS / "maze/ablations.yaml"
    argv = ["eval", str(CONFIGS / "maze/mstt.yaml"), "--run", str(tmp_path / "run"), "--ablation", "no_such"]
    err = _refused(capsys, argv, "--ablation no_such: not an ablation of", str(ablations))
    assert all(name in err for name in load_ablations(ablations))


def test_an_ablation_without_an_ablations_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(f"extends: {CONFIGS / 'maze/tiny.yaml'}\nsource: {CONFIGS / 'maze/source.yaml'}\n"
                      f"targets: [{CONFIGS / 'maze/t1.yaml'}]\n")  # fmt: skip
    _refused(capsys, ["train", str(config), "--run", str(tmp_path / "run"), "--ablation", "planner_token"],
             "--ablation planner_token:", str(tmp_path / ABLATIONS_FILE), "not found")  # fmt: skip


def test_a_bad_ablations_file_names_its_field(tmp_path: Path) -> None:
    path = tmp_path / ABLATIONS_FILE
    path.write_text("ablations:\n  x: {description: d, set: {}}\n")
    with pytest.raises(ConfigError, match=r"ablations\.yaml: invalid config: field 'ablations\.x\.set' = \{\}"):
        load_ablations(path)


# --- overrides on the command line: what reaches the experiment ---------------------------------------------------


def test_train_and_offline_pass_overrides_to_the_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "train", lambda experiment, run, progress: seen.update(mstt=experiment))
    monkeypatch.setattr(cli, "evaluate_offline", lambda experiment, *a, **k: seen.update(offline=experiment)
                        or {"methods": {}})  # fmt: skip
    assert main(["train", str(CONFIGS / "maze/mstt.yaml"), "--run", str(tmp_path / "a"), "--seed", "2",
                 "--ablation", "planner_token", "--set", "bc.steps=7"]) == 0  # fmt: skip
    experiment = seen["mstt"]
    assert experiment.config.seed == 2 and experiment.config.bc.steps == 7
    assert experiment.config.planner.score == "token"
    assert experiment.overrides == ("--ablation planner_token", "--seed 2", "--set bc.steps=7")
    assert main(["offline", str(CONFIGS / "offline/umaze.yaml"), "--run", str(tmp_path / "b"), "--seed", "1"]) == 0
    assert seen["offline"].fingerprint() == _load(CONFIGS / "offline/umaze.yaml", seed=1).fingerprint()


@pytest.mark.parametrize("command", TRAINED_COMMANDS)
def test_a_seed_other_than_the_runs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """--seed picks the run folder a command reads: one trained with another seed is refused before anything runs."""
    monkeypatch.chdir(tmp_path)
    config, run = CONFIGS / "maze/tiny.yaml", tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({"fingerprint": load_experiment(config).fingerprint(), "config": "x"}))
    _refused(capsys, [*_argv(command, config, run), "--seed", "1"], "fingerprint", f"{config} --seed 1 differs")
    # the run's own seed passes that check; the (empty) folder is refused later, for holding no models
    _refused(capsys, [*_argv(command, config, run), "--seed", "0"], "not trained")
