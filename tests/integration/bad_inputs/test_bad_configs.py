"""Config values that make no sense are refused when the file is loaded: every command exits 2 with one line that
names the file, the field and the value (never a traceback, never a later failure far from the config).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mstt.agent.cli import main
from mstt.agent.core.config import ConfigError, _read_yaml
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.worlds import load_config

EXIT_USER_ERROR = 2


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> str:
    """Run the CLI; assert exit 2 and a one-line message holding every ``expected`` part (other stderr lines are
    library warnings printed on first import)."""
    assert main(argv) == EXIT_USER_ERROR
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith(f"mstt {argv[0]}: ")]
    assert len(lines) == 1 and stderr.rstrip().endswith(lines[0]), stderr
    err = lines[0]
    for part in expected:
        assert part in err, (part, err)
    return err


# --- variant configs (collect, demo-make, render) ------------------------------------------------------------------

VARIANT_CASES = {
    # name: (YAML after the extends line, field, value)
    "infinite noise": ("dataset: {action_noise: .inf}\n", "dataset.action_noise", "inf"),
    "nan radius": ("dataset: {waypoint_radius: .nan}\n", "dataset.waypoint_radius", "nan"),
    "huge episode": ("episode_steps: 100000000000000000000000000000\n", "episode_steps", "1" + "0" * 29),
    "huge dataset": ("dataset: {transitions: 1000000000000}\n", "dataset.transitions", "1000000000000"),
    "duplicate key": ("episode_steps: 100\nepisode_steps: 200\n", "'episode_steps'", "200"),
}


@pytest.mark.parametrize("case", sorted(VARIANT_CASES))
def test_nonsense_variant_values_are_refused_at_load(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    body, field, value = VARIANT_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(f"extends: {configs / 'maze/t1.yaml'}\n{body}")
    with pytest.raises(ConfigError):
        load_config(path)
    _refused(capsys, ["demo-make", str(path), "--out", str(tmp_path / "demo.json")], str(path), field, value)
    assert not (tmp_path / "demo.json").exists()


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("task: maze\ntask: fetch\nname: x\n")
    with pytest.raises(ConfigError, match=r"field 'task' is given twice: 'maze' \(line 1\) and 'fetch' \(line 2\)"):
        load_config(path)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:

    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  a: 3\n")
    assert _read_yaml(path)["x"] == {"a": 3, "b": 2}


@pytest.mark.parametrize(("extends", "problem"), [(".", "is a folder"), ("nope.yaml", "file not found")])
def test_bad_extends_names_the_referring_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extends: str, problem: str
) -> None:
    path = tmp_path / "child.yaml"
    path.write_text(f"extends: {extends}\nepisode_steps: 10\n")
    _refused(capsys, ["render", str(path), "--out", str(tmp_path / "x.png")], str(path), "'extends'", repr(extends),
             problem)  # fmt: skip


def test_non_utf8_file_is_named(configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(f"extends: {configs / 'maze/t1.yaml'}\nname: caf\xe9\n".encode("latin-1"))
    _refused(capsys, ["demo-make", str(path), "--out", str(tmp_path / "d.json")], str(path), "UTF-8", "0xe9")


@pytest.mark.parametrize(
    ("extends", "body", "expected"),
    [
        ("fetch/source.yaml", "start_jitter: 0.02\n", "apply to target variants"),
        ("fetch/source.yaml", "start: [1.3, 0.7, 0.5]\n", "apply to target variants"),
        ("fetch/zone.yaml", "start: [1.3, 0.82, 0.5]\n", "lies inside a zone"),
        ("fetch/zone.yaml", "start: [1.3, 0.2, 0.5]\n", "start[1]=0.2 is outside the workspace"),
        ("fetch/zone.yaml", "start_jitter: 0.2\n", "start_jitter"),  # past the 5 cm bound
        ("fetch/zone.yaml", "start_jitter: -0.01\n", "start_jitter"),
    ],
)
def test_fetch_starts_are_target_only_and_outside_the_zones(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extends: str, body: str, expected: str
) -> None:
    path = tmp_path / "jitter.yaml"
    path.write_text(f"extends: {configs / extends}\n{body}")
    _refused(capsys, ["demo-make", str(path), "--out", str(tmp_path / "d.json")], str(path), expected)
    assert not (tmp_path / "d.json").exists()


@pytest.mark.parametrize(("variant", "steps"), [("maze/t1.yaml", 5), ("fetch/zone.yaml", 3)])
def test_episode_too_short_for_the_scripted_expert(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], variant: str, steps: int
) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(f"extends: {configs / variant}\nepisode_steps: {steps}\n")
    _refused(capsys, ["demo-make", str(path), "--out", str(tmp_path / "d.json")], str(path), "'episode_steps'",
             f"= {steps}")  # fmt: skip


# --- experiment configs (train, eval, run) ------------------------------------------------------------------------


def _experiment(configs: Path, tmp_path: Path, extra: str, targets: str | None = None) -> Path:
    """A tiny experiment with its data under tmp_path and ``extra`` appended."""
    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {configs / 'maze/tiny.yaml'}\ndata: {{root: {tmp_path / 'data'}}}\n")
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"extends: {base}\nsource: {configs / 'maze/source.yaml'}\n"
        f"targets: [{targets or configs / 'maze/t1.yaml'}]\n{extra}"
    )
    return path


EXPERIMENT_CASES = {
    # name: (YAML added to a tiny experiment, field, value)
    "unknown device": ("train: {device: tpu9}\n", "'train.device'", "tpu9"),
    "infinite lr in a component": ("critic: {gamma: .inf}\n", "'critic.gamma'", "inf"),
    "huge data size": ("data: {transitions: 100000000000000000000}\n", "'data.transitions'", "100000000000000000000"),
    "missing demo": ("demos: {t1: no_such_demo.json}\n", "'demos.t1'", "no_such_demo.json"),
    "missing source": ("source: no_such_source.yaml\n", "'source'", "no_such_source.yaml"),
}


@pytest.mark.parametrize("case", sorted(EXPERIMENT_CASES))
def test_bad_experiment_values_are_refused_before_training(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    extra, field, value = EXPERIMENT_CASES[case]
    path = _experiment(configs, tmp_path, extra)
    with pytest.raises(ConfigError):
        load_experiment(path)
    err = _refused(capsys, ["train", str(path), "--run", str(tmp_path / "run"), "--quiet"], str(path), field, value)
    assert "TokenizerConfig" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_missing_target_names_the_experiment_and_the_field(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _experiment(configs, tmp_path, "", targets="t9.yaml")
    _refused(capsys, ["train", str(path), "--run", str(tmp_path / "run")], str(path), "'targets[0]'", "t9.yaml",
             "file not found")  # fmt: skip


def test_several_problems_still_fit_one_line(configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _experiment(configs, tmp_path, "train: {device: tpu9, checkpoint_every: -1}\n")
    _refused(capsys, ["train", str(path), "--run", str(tmp_path / "run")], "'train.device'", "'train.checkpoint_every'")


def test_perception_config_is_read_like_every_config(
    configs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = tmp_path / "backend.yaml"
    backend.write_text("model: a\nmodel: b\n")
    _refused(capsys, ["run", "go to the red ball", "--config", str(_experiment(configs, tmp_path, "")), "--run",
                      str(tmp_path / "run"), "--perception-config", str(backend), "--out", str(tmp_path / "out")],
             str(backend), "'model'", "'b'")  # fmt: skip
