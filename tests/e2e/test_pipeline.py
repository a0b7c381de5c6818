"""`mstt train` and `mstt eval` end to end on a toy-sized experiment (seconds, not results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mstt.agent.cli import main
from mstt.agent.experiments.experiment import component_config, load_experiment
from mstt.agent.core.demo import Demo
from mstt.agent.experiments.train import RunMismatchError, train
from mstt.agent.experiments.evaluate import evaluate_transfer

METRICS = {"goal_rate", "goal_ci95", "return_mean", "failure_rate", "cost_mean", "steps_mean", "mask_size"}


@pytest.fixture
def experiment_file(configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """configs/maze/tiny.yaml with a 40-step T1 so evaluation takes seconds; data under tmp_path."""
    monkeypatch.chdir(tmp_path)
    short_t1 = tmp_path / "t1_short.yaml"
    short_t1.write_text(f"extends: {configs / 'maze/t1.yaml'}\nepisode_steps: 40\n")
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"extends: {configs / 'maze/tiny.yaml'}\n"
        f"source: {configs / 'maze/source.yaml'}\n"
        f"targets: [{short_t1}]\n"
        f"demos: {{t1: {configs / 'demos/maze_t1.json'}}}\n"
        "data: {root: data, transitions: 3000}\n"
    )
    return path


def test_train_then_eval_writes_the_documented_json(
    experiment_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["train", str(experiment_file), "--run", str(run), "--device", "cpu", "--quiet"]) == 0
    for stage in ("tokenizer", "critic", "generator", "bc", "dds_skills"):  # tiny.yaml has an executor_dds
        assert (run / stage / "model.safetensors").exists()
    out = tmp_path / "eval.json"
    assert main(["eval", str(experiment_file), "--run", str(run), "--episodes", "2", "--json", str(out),
                 "--methods", "mstt", "mstt_dds", "unmasked", "oracle_mask", "bc", "--figures",
                 str(tmp_path / "fig"), "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "fig" / "t1.png").stat().st_size > 5000
    result = json.loads(out.read_text())
    assert result["task"] == "maze" and result["episodes"] == 2
    assert set(result["variants"]) == {"t1"}
    methods = result["variants"]["t1"]
    assert set(methods) == {"mstt", "mstt_dds", "unmasked", "oracle_mask", "bc"}
    for metrics in methods.values():
        assert METRICS <= set(metrics)
        assert 0.0 <= metrics["goal_rate"] <= 1.0
        lo, hi = metrics["goal_ci95"]
        assert lo <= metrics["goal_rate"] <= hi
    assert methods["unmasked"]["mask_size"] == 16 and methods["bc"]["mask_size"] is None
    assert 0 < methods["mstt"]["mask_size"] < 16
    # the DDS executor runs the same planner and demo mask; only the low level differs
    assert methods["mstt_dds"]["mask_size"] == methods["mstt"]["mask_size"]
    assert methods["mstt_dds"]["fallback_rate"] is not None
    # a run folder without the dds_skills stage refuses mstt_dds, naming the config section
    (run / "dds_skills").rename(tmp_path / "dds_skills_moved")
    assert main(["eval", str(experiment_file), "--run", str(run), "--episodes", "2", "--methods", "mstt_dds",
                 "--device", "cpu", "--quiet"]) == 2  # fmt: skip
    assert "executor_dds" in capsys.readouterr().err
    (tmp_path / "dds_skills_moved").rename(run / "dds_skills")

    pixels = tmp_path / "pixels.json"
    assert main(["eval", str(experiment_file), "--run", str(run), "--episodes", "2", "--json", str(pixels),
                 "--methods", "mstt", "--observation", "pixels", "--demo-source", "geometric",
                 "--quiet"]) == 0  # fmt: skip
    result = json.loads(pixels.read_text())
    assert result["observation"] == "pixels"
    # the demo was read off T1's picture; its mask is compared with the scripted demo's
    assert 0.0 < result["demos"]["t1"]["scripted_mask_jaccard"] <= 1.0
    assert (tmp_path / "demo_geometric_t1.json").exists() and (tmp_path / "demo_geometric_t1.png").exists()


def test_bench_tokens_and_plan_report_on_the_trained_run(
    experiment_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train(load_experiment(experiment_file), run, progress=False)
    capsys.readouterr()
    assert main(["bench", "tokens", str(experiment_file), "--run", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 < result["purity"] <= 1.0 and result["route_windows"]["t1"] > 0
    share = result["mask_share_of_route_windows"]["t1"]
    assert 0.0 < share["t1"] <= 1.0 and 0 < share["mask_size"] <= 16

    assert main(["bench", "plan", str(experiment_file), "--run", str(run), "--candidates", "8", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "demo of t1" in out
    timing = json.loads(out[out.index("{"):])
    # the decision as `mstt eval` makes it: the T1 demo's mask and windows (tiny.yaml sets a match radius)
    assert timing["match_radius"] is not None and 0 < timing["demo_mask_size"] <= 16
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
    import torch

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
    experiment_file: Path, configs: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    experiment = load_experiment(experiment_file)
    train(experiment, run, progress=False)
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
    from mstt.skills.critic import CriticConfig
    from mstt.skills.dds import DDSConfig

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


def test_run_instruction_end_to_end(experiment_file: Path, tmp_path: Path) -> None:
    """Picture -> geometric demo -> mask -> goal from words -> act: every artefact is written."""
    run = tmp_path / "run"
    train(load_experiment(experiment_file), run, progress=False)
    out = tmp_path / "agent"
    assert main(["run", "go to the red ball", "--config", str(experiment_file), "--run", str(run),
                 "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["variant"] == "t1" and report["perception"] == "geometric"
    assert report["goal"].startswith("the goal marker") and 0 < report["mask_size"] <= 16
    assert (out / "episode.gif").stat().st_size > 1000
    assert Path(report["overlay_png"]).exists()
    demo = json.loads((out / "demo.json").read_text())
    assert demo["variant"] == "t1" and len(demo["points"]) >= 2
