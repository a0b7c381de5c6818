"""`mstt train`, `mstt eval`, `mstt bench` and `mstt run` end to end on a toy-sized experiment (seconds, not
results). One trained run (tests/e2e/conftest.py) serves every test that only reads it, and each test checks one
part: a stage, a method, the figure, pixel observations, the perception-made demo."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mstt.agent.cli import main
from mstt.agent.core.demo import Demo
from mstt.agent.experiments.evaluate import evaluate_transfer
from mstt.agent.experiments.experiment import component_config, load_experiment
from mstt.agent.experiments.train import RunMismatchError, train
from mstt.skills.critic import CriticConfig
from mstt.skills.dds import DDSConfig

from tiny_experiment import CliResult, TrainedRun, run_cli

METRICS = {"goal_rate", "goal_ci95", "return_mean", "failure_rate", "cost_mean", "steps_mean", "mask_size"}
STAGES = ("tokenizer", "critic", "generator", "bc", "dds_skills")  # tiny.yaml has an executor_dds
EVAL_METHODS = ("mstt", "mstt_dds", "unmasked", "oracle_mask", "bc")
EPISODES = 2
FULL_MASK = 16
"""The tiny tokenizer's codebook size: the mask of a method that masks nothing."""
MIN_FIGURE_BYTES = 5000


@dataclass(frozen=True)
class Evaluation:
    cli: CliResult
    folder: Path

    def result(self, name: str) -> dict:
        """The JSON the call wrote; asserts the call succeeded first, so a failed eval names its error."""
        assert self.cli.code == 0, self.cli.err
        return json.loads((self.folder / name).read_text())


@pytest.fixture(scope="module")
def evaluation(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    """`mstt eval` of the five methods on the shared run, with the per-variant figures."""
    experiment, run = tiny_run
    folder = tmp_path_factory.mktemp("eval")
    cli = run_cli(["eval", str(experiment), "--run", str(run), "--episodes", str(EPISODES),
                   "--json", str(folder / "eval.json"), "--methods", *EVAL_METHODS, "--figures", str(folder / "fig"),
                   "--device", "cpu", "--quiet"])  # fmt: skip
    return Evaluation(cli, folder)


@pytest.fixture(scope="module")
def pixel_evaluation(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    """`mstt eval` of mstt from rendered frames, on a demo the geometric backend reads off T1's picture."""
    experiment, run = tiny_run
    folder = tmp_path_factory.mktemp("pixels")
    cli = run_cli(["eval", str(experiment), "--run", str(run), "--episodes", str(EPISODES),
                   "--json", str(folder / "pixels.json"), "--methods", "mstt", "--observation", "pixels",
                   "--demo-source", "geometric", "--quiet"])  # fmt: skip
    return Evaluation(cli, folder)


@pytest.mark.parametrize("stage", STAGES)
def test_train_writes_each_stage(trained_run: TrainedRun, stage: str) -> None:
    assert trained_run.train.code == 0, trained_run.train.err
    assert (trained_run.run / stage / "model.safetensors").exists()


@pytest.mark.parametrize("stage", STAGES)
def test_train_logs_each_stage(trained_run: TrainedRun, stage: str) -> None:
    """Every stage leaves its scalars as a CSV (steps rising from the first logged one) and TensorBoard events."""
    rows = (trained_run.run / "logs" / f"{stage}.csv").read_text().splitlines()
    header, steps = rows[0].split(","), [int(row.split(",")[0]) for row in rows[1:]]
    assert header[0] == "step" and {"lr", "steps_per_s"} <= set(header) and len(header) > 3
    assert steps and steps == sorted(set(steps))
    assert list((trained_run.run / "logs" / "tensorboard" / stage).glob("events.out.tfevents.*"))


def test_eval_writes_the_documented_json(evaluation: Evaluation) -> None:
    result = evaluation.result("eval.json")
    assert result["task"] == "maze" and result["episodes"] == EPISODES
    assert set(result["variants"]) == {"t1"}
    assert set(result["variants"]["t1"]) == set(EVAL_METHODS)


@pytest.mark.parametrize("method", EVAL_METHODS)
def test_each_method_reports_its_metrics(evaluation: Evaluation, method: str) -> None:
    metrics = evaluation.result("eval.json")["variants"]["t1"][method]
    assert METRICS <= set(metrics)
    assert 0.0 <= metrics["goal_rate"] <= 1.0
    lo, hi = metrics["goal_ci95"]
    assert lo <= metrics["goal_rate"] <= hi


def test_each_method_masks_as_documented(evaluation: Evaluation) -> None:
    methods = evaluation.result("eval.json")["variants"]["t1"]
    assert methods["unmasked"]["mask_size"] == FULL_MASK and methods["bc"]["mask_size"] is None
    assert 0 < methods["mstt"]["mask_size"] < FULL_MASK


def test_dds_executor_runs_the_mstt_plan(evaluation: Evaluation) -> None:
    """The DDS executor runs the same planner and demo mask; only the low level differs."""
    methods = evaluation.result("eval.json")["variants"]["t1"]
    assert methods["mstt_dds"]["mask_size"] == methods["mstt"]["mask_size"]
    assert methods["mstt_dds"]["fallback_rate"] is not None


def test_eval_writes_the_figure(evaluation: Evaluation) -> None:
    assert evaluation.cli.code == 0, evaluation.cli.err
    assert (evaluation.folder / "fig" / "t1.png").stat().st_size > MIN_FIGURE_BYTES


def test_mstt_dds_without_the_dds_stage_names_the_config_section(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    """A run folder without the dds_skills stage refuses mstt_dds, naming the config section (on a copy of the
    shared run, which stays whole for the other tests)."""
    experiment, run = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "dds_skills")
    cli = run_cli(["eval", str(experiment), "--run", str(copy), "--episodes", str(EPISODES), "--methods", "mstt_dds",
                   "--device", "cpu", "--quiet"])  # fmt: skip
    assert cli.code == 2, cli.err
    assert "executor_dds" in cli.err


def test_pixel_observation_mode(pixel_evaluation: Evaluation) -> None:
    result = pixel_evaluation.result("pixels.json")
    assert result["observation"] == "pixels"


def test_perception_made_demo(pixel_evaluation: Evaluation) -> None:
    """The demo was read off T1's picture; its mask is compared with the scripted demo's."""
    result = pixel_evaluation.result("pixels.json")
    assert 0.0 < result["demos"]["t1"]["scripted_mask_jaccard"] <= 1.0
    folder = pixel_evaluation.folder
    assert (folder / "demo_geometric_t1.json").exists() and (folder / "demo_geometric_t1.png").exists()


def test_bench_tokens_and_plan_report_on_the_trained_run(
    tiny_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    experiment_file, run = tiny_run
    capsys.readouterr()
    assert main(["bench", "tokens", str(experiment_file), "--run", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 < result["purity"] <= 1.0 and result["route_windows"]["t1"] > 0
    share = result["mask_share_of_route_windows"]["t1"]
    assert 0.0 < share["t1"] <= 1.0 and 0 < share["mask_size"] <= FULL_MASK

    assert main(["bench", "plan", str(experiment_file), "--run", str(run), "--candidates", "8", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "demo of t1" in out
    timing = json.loads(out[out.index("{"):])
    # the decision as `mstt eval` makes it: the T1 demo's mask and windows (tiny.yaml sets a match radius)
    assert timing["match_radius"] is not None and 0 < timing["demo_mask_size"] <= FULL_MASK
    assert timing["demo_windows"] > 0 and timing["batched_demo_ms"] > 0 and timing["batched_ms"] > 0


def test_rerun_skips_finished_stages_and_refuses_other_configs(
    experiment_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    experiment = load_experiment(experiment_file)
    first = train(experiment, run, progress=False)
    # A run killed after the tokenizer: only the later stages are trained again, on the same tokens.
    for stage in ("critic", "generator", "bc"):
        for f in (run / stage).iterdir():
            f.unlink()
        (run / stage).rmdir()
    again = train(experiment, run, progress=False)
    for a, b in zip(first.tokenizer.state_dict().values(), again.tokenizer.state_dict().values()):
        assert (a == b).all()
    other = experiment_file.with_name("other.yaml")
    other.write_text(experiment_file.read_text() + "seed: 5\n")
    with pytest.raises(RunMismatchError, match="fingerprint"):
        train(load_experiment(other), run, progress=False)
    with pytest.raises(RunMismatchError, match="evaluate it with the config it was trained with"):
        evaluate_transfer(load_experiment(other), run, episodes=1, progress=False)


def test_same_seed_and_thread_count_give_identical_weights(experiment_file: Path, tmp_path: Path) -> None:
    """Two trainings of one config, in one process with one torch thread, write byte-identical models; each stage's
    report records the thread count (another count changes the float reductions, hence the weights)."""

    experiment = load_experiment(experiment_file)
    train(experiment, tmp_path / "a", progress=False)
    train(experiment, tmp_path / "b", progress=False)
    stages = sorted(path.parent.name for path in (tmp_path / "a").glob("*/model.safetensors"))
    assert {"tokenizer", "critic", "generator", "bc"} <= set(stages)
    for stage in stages:
        first = (tmp_path / "a" / stage / "model.safetensors").read_bytes()
        assert first == (tmp_path / "b" / stage / "model.safetensors").read_bytes(), stage
        report = json.loads((tmp_path / "a" / "reports" / f"{stage}.json").read_text())
        assert report["torch_threads"] == torch.get_num_threads() == 1


def test_eval_refuses_demos_of_another_task_off_the_map_or_too_short(
    tiny_run: tuple[Path, Path], configs: Path, tmp_path: Path
) -> None:
    experiment_file, run = tiny_run
    experiment = load_experiment(experiment_file)
    fetch_demo = configs / "demos/fetch_zone.json"
    with pytest.raises(ValueError, match="fetch_zone.json is a demo of the fetch task"):
        evaluate_transfer(experiment, run, episodes=1, demo_path=fetch_demo, progress=False)
    demo = Demo.load(configs / "demos/maze_t1.json")
    off_map = demo.model_copy(update={"points": [[p[0] + 20.0, p[1]] for p in demo.points]})
    with pytest.raises(ValueError, match=r"off_map.json: 427 of 427 points lie where no agent can be"):
        evaluate_transfer(experiment, run, episodes=1, demo_path=off_map.save(tmp_path / "off_map.json"),
                          progress=False)  # fmt: skip
    short = demo.model_copy(update={"points": demo.points[:3], "timestamps": demo.timestamps[:3]})
    with pytest.raises(ValueError, match="demo .*short.json"):
        evaluate_transfer(experiment, run, episodes=1, demo_path=short.save(tmp_path / "short.json"), progress=False)


def test_device_override_keeps_the_fingerprint(experiment_file: Path) -> None:
    experiment = load_experiment(experiment_file)
    on_gpu = experiment.with_device("cuda")
    assert on_gpu.config.train.device == "cuda" and experiment.config.train.device == "cpu"
    assert on_gpu.fingerprint() == experiment.fingerprint()  # a run folder resumes on another device


def test_experiment_seed_reaches_every_component() -> None:
    """`seed: N` at the top of an experiment retrains every component (nested configs too) from other draws;
    seed 0 keeps the components' own seeds, and 'auto' devices take the experiment's."""

    critic = component_config(CriticConfig(seed=3), "cpu", 2)
    assert (critic.seed, critic.device) == (5, "cpu")
    dds = component_config(DDSConfig(), "cpu", 7)
    assert dds.seed == 7 and dds.iql.seed == 7 and dds.iql.device == "cpu"
    assert component_config(CriticConfig(device="cuda"), "cpu", 0) == CriticConfig(device="cuda")


def test_bad_experiment_is_refused(configs: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"extends: {configs / 'maze/tiny.yaml'}\nsource: {configs / 'maze/source.yaml'}\n"
        "generator: {horizon: 5}\n"
    )
    assert main(["train", str(path), "--run", str(tmp_path / "r")]) == 2


def test_run_instruction_end_to_end(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    """Picture -> geometric demo -> mask -> goal from words -> act: every artefact is written."""
    experiment_file, run = tiny_run
    out = tmp_path / "agent"
    assert main(["run", "go to the red ball", "--config", str(experiment_file), "--run", str(run),
                 "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["variant"] == "t1" and report["perception"] == "geometric"
    assert report["goal"].startswith("the goal marker") and 0 < report["mask_size"] <= FULL_MASK
    assert (out / "episode.gif").stat().st_size > 1000
    assert report["video"] == "episode.gif" and (out / report["overlay_png"]).exists()
    demo = json.loads((out / "demo.json").read_text())
    assert demo["variant"] == "t1" and len(demo["points"]) >= 2
