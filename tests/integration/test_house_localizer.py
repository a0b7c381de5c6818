"""The house's localizer stage and pixel observations: configs/house/tiny.yaml trains a localizer that beats guessing
the mean position, dead reckoning on the map moves the pose as the env does (a wall stops a step), `mstt eval
--observation pixels` runs on the tracked estimates while the metrics read the simulator's positions, a run without
the stage is refused with the command that trains it, and `--stages localizer` trains it into a run without
touching the other stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mstt.agent.core.config import ConfigError
from mstt.agent.experiments.controllers import make_vector_env
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.pixels import TRUE_POSITION_KEY
from mstt.agent.experiments.train import LOCALIZER_STAGE, load_models
from mstt.agent.worlds import make_task
from mstt.agent.worlds.house import MOVE_FORWARD, TURN_LEFT, TURN_RIGHT, HouseTask, house_env
from mstt.agent.worlds.house_frames import collect_frames
from mstt.skills.localizer import Localizer, pose_errors

from repo_paths import CONFIGS
from tiny_experiment import run_cli

OTHER_STAGES = ("tokenizer", "critic", "generator", "bc")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(experiment file, run folder): configs/house/tiny.yaml trained once for this module, localizer included."""
    root = tmp_path_factory.mktemp("house-localizer")
    experiment = root / "house.yaml"
    experiment.write_text(
        f"extends: {CONFIGS / 'house/tiny.yaml'}\n"
        f"source: {CONFIGS / 'house/source.yaml'}\n"
        f"targets: [{CONFIGS / 'house/blocked.yaml'}]\n"
        f"data: {{root: {root / 'data'}}}\n"
    )
    run = root / "run"
    trained = run_cli(["train", str(experiment), "--run", str(run), "--device", "cpu", "--quiet"])
    assert trained.code == 0, trained.err
    return experiment, run


def _without_localizer(run: Path, folder: Path) -> Path:
    copy = folder / "run-without-localizer"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(LOCALIZER_STAGE, ".training"))
    return copy


def test_tiny_localizer_beats_guessing_the_mean_position(tiny: tuple[Path, Path]) -> None:
    experiment, run = tiny
    settings = load_experiment(experiment).config.localizer
    assert settings is not None
    localizer = Localizer.from_pretrained(run / LOCALIZER_STAGE)
    task = make_task(load_experiment(experiment).source)
    assert isinstance(task, HouseTask)
    held_out = collect_frames(task, settings.frames.report_frames, settings.frames.every, settings.frames.report_seed)
    errors = pose_errors(localizer.locate(held_out.frames), held_out.poses.astype(np.float64))
    guess = np.linalg.norm(held_out.poses[:, :2] - localizer.position_mean.numpy(), axis=1)
    assert errors.position_median_m < np.median(guess)
    assert errors.heading_median_deg < 90.0  # a random unit vector is 90 degrees off on average


def test_pixel_observations_are_tracked_readings_and_metrics_the_truth(tiny: tuple[Path, Path]) -> None:
    experiment, run = tiny
    loaded = load_experiment(experiment)
    localizer = load_models(run).localizer
    assert localizer is not None and loaded.config.localizer is not None
    pose_filter = loaded.config.localizer.filter
    task = make_task(loaded.targets["blocked"])
    assert isinstance(task, HouseTask)
    venv = make_vector_env(task, 2, "pixels", localizer=localizer, pose_filter=pose_filter)

    def frames() -> list[np.ndarray]:
        return [task.render_egocentric(env) for env in venv.envs]

    try:
        obs, info = venv.reset(seed=0, options=task.reset_options())
        seen = frames()
        # env e was reset with seed e: its particles are drawn from that seed, so the two envs' episodes differ
        trackers = [pose_filter.track(task, localizer.locate(f[None])[0], np.random.default_rng([pose_filter.seed, e]))
                    for e, f in enumerate(seen)]  # fmt: skip
        np.testing.assert_allclose(obs["observation"], np.stack([t.estimate for t in trackers]), rtol=1e-6)
        np.testing.assert_array_equal(seen[0], seen[1])  # the same start and view ...
        assert not np.array_equal(trackers[0].poses, trackers[1].poses)  # ... and each env its own particles
        for action in (MOVE_FORWARD, TURN_LEFT, MOVE_FORWARD):
            obs, _, _, _, info = venv.step(np.full(2, action))
            last, seen = seen, frames()
            expected = np.stack([t.step(action, localizer.locate(f[None])[0], bool(np.array_equal(f, before)))
                                 for t, f, before in zip(trackers, seen, last)])  # fmt: skip
            np.testing.assert_allclose(obs["observation"], expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(obs["achieved_goal"], expected[:, :2], rtol=1e-5, atol=1e-6)
            for e, env in enumerate(venv.envs):
                sim = house_env(env)
                np.testing.assert_array_equal(info[TRUE_POSITION_KEY][e], sim.observation()["achieved_goal"])
                np.testing.assert_array_equal(obs["desired_goal"][e], sim.goal)
    finally:
        venv.close()


def test_dead_reckoning_matches_the_env_in_open_floor(tiny: tuple[Path, Path]) -> None:
    experiment, _ = tiny
    task = make_task(load_experiment(experiment).source)
    assert isinstance(task, HouseTask)
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0, options={"start": [8.0, 6.5], "heading": 0.3})  # the middle of the living room
        for action in (MOVE_FORWARD, TURN_RIGHT, MOVE_FORWARD, TURN_LEFT, TURN_LEFT, MOVE_FORWARD):
            predicted = task.dead_reckon(obs["observation"][None], np.array([action]))[0]
            obs, *_ = env.step(action)
            np.testing.assert_allclose(predicted, obs["observation"], atol=1e-9)
    finally:
        env.close()


def test_dead_reckoning_stops_a_forward_step_into_a_wall_as_the_env_does(tiny: tuple[Path, Path]) -> None:
    experiment, _ = tiny
    task = make_task(load_experiment(experiment).targets["blocked"])
    assert isinstance(task, HouseTask)
    env = task.make_env()
    stopped = 0
    try:
        obs, _ = env.reset(seed=0, options={"start": [8.0, 6.5], "heading": 0.3})
        for _ in range(60):  # straight ahead across the living room into its wall, then pushing against it
            before = obs["observation"].copy()
            predicted = task.dead_reckon(before[None], np.array([MOVE_FORWARD]))[0]
            obs, *_ = env.step(MOVE_FORWARD)
            np.testing.assert_allclose(predicted, obs["observation"], atol=1e-9)
            stopped += int(np.array_equal(obs["observation"][:2], before[:2]))
    finally:
        env.close()
    assert stopped > 10
    assert task.standable(obs["observation"][None, :2])[0]


def test_pixel_eval_runs_an_episode(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny
    out = tmp_path / "eval.json"
    evaluated = run_cli(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--observation", "pixels",
                         "--methods", "mstt", "--json", str(out), "--quiet"])  # fmt: skip
    assert evaluated.code == 0, evaluated.err
    result = json.loads(out.read_text())
    assert result["observation"] == "pixels"
    assert 0.0 <= result["variants"]["blocked"]["mstt"]["goal_rate"] <= 1.0


def test_pixels_without_the_localizer_stage_are_refused_with_the_command(tiny: tuple[Path, Path], tmp_path: Path):
    experiment, run = tiny
    bare = _without_localizer(run, tmp_path)
    refused = run_cli(["eval", str(experiment), "--run", str(bare), "--episodes", "1", "--observation", "pixels",
                       "--quiet"])  # fmt: skip
    assert refused.code == 2
    assert "has no localizer stage" in refused.err
    assert f"mstt train {experiment} --run {bare} --stages localizer" in refused.err
    assert len(refused.err.strip().splitlines()) == 1


def test_stages_localizer_trains_it_alone_into_an_existing_run(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    experiment, run = tiny
    bare = _without_localizer(run, tmp_path)
    before = {stage: (bare / stage / "model.safetensors").stat().st_mtime_ns for stage in OTHER_STAGES}
    trained = run_cli(["train", str(experiment), "--run", str(bare), "--stages", "localizer", "--device", "cpu",
                       "--quiet"])  # fmt: skip
    assert trained.code == 0, trained.err
    assert before == {stage: (bare / stage / "model.safetensors").stat().st_mtime_ns for stage in OTHER_STAGES}
    assert (bare / LOCALIZER_STAGE / "model.safetensors").read_bytes() == (
        run / LOCALIZER_STAGE / "model.safetensors"
    ).read_bytes()  # the same seed and frames: the same weights
    assert json.loads((bare / "reports" / "localizer.json").read_text())["trained_on"]["frames"] == 400


def test_a_localizer_trained_with_other_settings_is_refused(tiny: tuple[Path, Path]) -> None:
    experiment, run = tiny
    refused = run_cli(["eval", str(experiment), "--run", str(run), "--episodes", "1", "--set",
                       "localizer.model.hidden=64", "--quiet"])  # fmt: skip
    assert refused.code == 2
    assert "localizer was trained with hidden=32" in refused.err


def test_a_localizer_section_in_a_world_without_egocentric_frames_is_refused(tmp_path: Path) -> None:
    experiment = tmp_path / "maze.yaml"
    experiment.write_text(
        f"extends: {CONFIGS / 'maze/tiny.yaml'}\nsource: {CONFIGS / 'maze/source.yaml'}\n"
        f"targets: [{CONFIGS / 'maze/t1.yaml'}]\nlocalizer: {{}}\n"
    )
    with pytest.raises(ConfigError, match="field 'localizer': a maze world has no egocentric frames"):
        load_experiment(experiment)
