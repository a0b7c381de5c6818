"""The `mstt` command line: one sub-command per step of the pipeline.

Errors a user can fix (a bad config, a missing dataset) print one clear message and exit 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

# Offscreen rendering: MuJoCo must pick its GL backend before it is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import json
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version

import torch
from PIL import Image

from mstt.agent.core.config import (  # noqa: E402
    ConfigError,
    Override,
    _read_yaml,
    check_device,
    command_line_overrides,
    resolve_config_path,
)
from mstt.agent.core.demo import Demo
from mstt.agent.core.io import UnwritablePathError, check_writable, write_json_atomic  # noqa: E402
from mstt.agent.core.provenance import pin_git_state, provenance
from mstt.agent.experiments.agent_loop import run_instruction
from mstt.agent.experiments.bench import (
    bench_provenance,
    collection_rate,
    localizer_errors,
    planning_latency,
    token_routes,
)
from mstt.agent.experiments.corruptions import corrupt, parse_corruption
from mstt.agent.experiments.evaluate import check_demo, demo_mask, evaluate_transfer
from mstt.agent.experiments.experiment import load_experiment
from mstt.agent.experiments.hub import push_run, resolve_run
from mstt.agent.experiments.methods import AGENT_POLICIES  # noqa: E402
from mstt.agent.experiments.offline import evaluate_offline, load_offline_experiment, train_offline
from mstt.agent.experiments.plots import plot_run
from mstt.agent.experiments.train import LOCALIZER_STAGE, check_run_matches, load_models, train, train_only
from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.data import collect
from mstt.perception.errors import BackendError  # noqa: E402
from mstt.skills.checkpoint import CONFIG_NAME
from mstt.skills.localizer import Localizer
from mstt.skills.theory import TheoryConfig, run_theory
from mstt.skills.training import TRACKERS, tracking

EXIT_USER_ERROR = 2
INPUT_FILE_OPTIONS = ("config", "perception_config", "demo")
"""The arguments that name an input file which may ship inside the package (configs/..., configs/demos/...)."""


def _check_output(path: str | Path | None, option: str, kind: Literal["file", "folder"]) -> None:
    """Refuse an output option that cannot be written before the command's work starts (None: not given)."""
    if path is not None:
        check_writable(path, option, kind)


def _device_option(name: str) -> str:
    try:
        return check_device(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _resolve_input_files(args: argparse.Namespace) -> None:
    """Point every input-file argument of ``args`` at its file, in place: as given, else inside the installed package
    (agent/core/config.py resolve_config_path), so `mstt demo-make configs/maze/t1.yaml` works from any directory."""
    given = vars(args)
    for name in INPUT_FILE_OPTIONS:
        if given.get(name) is not None:
            given[name] = resolve_config_path(given[name])


TRAINING_COMMANDS = ("train", "offline")
"""Commands that train into their --run folder: a run downloaded from the Hub is refused there."""
RUN_OPTION_COMMANDS = (*TRAINING_COMMANDS, "eval", "run", "bench")
"""Commands whose --run names a local run folder or a Hub model repo USER/NAME."""


def _resolve_run(args: argparse.Namespace) -> None:
    """--run, in place: a local run folder as given, else a Hub repo id USER/NAME downloaded into the Hub cache and
    used read-only (agent/experiments/hub.py resolve_run); a command that trains refuses a Hub run."""
    given = vars(args)
    if args.command in RUN_OPTION_COMMANDS and given.get("run") is not None:
        given["run"] = resolve_run(given["run"], trains=args.command in TRAINING_COMMANDS)


def _version() -> str:

    try:
        return version("mstt")
    except PackageNotFoundError:
        return "unknown (the package is not installed)"


def _collect(args: argparse.Namespace) -> None:

    task = make_task(load_config(args.config))
    summary = collect(task, args.transitions, args.out, args.seed, progress=not args.quiet)
    print(summary)


def _add_override_options(p: argparse.ArgumentParser, trained: bool) -> None:
    """--seed, --set and --ablation of a command that loads an experiment config (agent/config.py: Override)."""
    seeds = "episodes are seeded by eval.seed, the planner's candidates by planner.seed"
    also = f": the run folder must have been trained with it ({seeds})" if trained else ""
    p.add_argument("--seed", type=int, help=f"the experiment's top-level training seed (default: the config's){also}")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="change one config field, validated like the file; VALUE is YAML, e.g. --set planner.match_radius=0.1, "
        "--set eval.methods=[mstt,bc] (repeatable; applied after --ablation and --seed)",
    )  # fmt: skip
    p.add_argument("--ablation", help="apply a named override set of the ablations.yaml beside the config")


def _overrides(args: argparse.Namespace) -> list[Override]:
    return command_line_overrides(args.config, args.seed, args.set, args.ablation)


def _experiment_kind(path: str) -> str:
    """The config's `experiment:` field ('mstt' transfer or 'offline' RL), `extends:` resolved."""

    return str(_read_yaml(Path(path).resolve()).get("experiment"))


def _train(args: argparse.Namespace) -> None:

    if _experiment_kind(args.config) == "offline":

        offline = load_offline_experiment(args.config, _overrides(args))
        if args.device is not None:
            offline = offline.with_device(args.device)
        with tracking(args.track):
            train_offline(offline, args.run, progress=not args.quiet)
        print(f"trained every method of {args.config} into {args.run}")
        return
    experiment = load_experiment(args.config, _overrides(args))
    if args.device is not None:
        experiment = experiment.with_device(args.device)
    with tracking(args.track):
        if args.stages:
            train_only(experiment, args.run, args.stages, progress=not args.quiet)
            print(f"trained {', '.join(args.stages)} into {args.run}")
            return
        train(experiment, args.run, progress=not args.quiet)
    print(f"trained every stage into {args.run}")


def _eval(args: argparse.Namespace) -> None:

    _check_output(args.json, "--json", "file")
    _check_output(args.figures, "--figures", "folder")
    _check_output(args.video, "--video", "folder")
    if _experiment_kind(args.config) == "offline":
        if args.video is not None:
            raise ValueError(f"--video: {args.config} is an offline RL config; videos are made of transfer episodes")
        _offline(args)
        return

    corruption = parse_corruption(args.corrupt) if args.corrupt else None
    evaluate_transfer(
        load_experiment(args.config, _overrides(args)), args.run, args.episodes, args.json, args.demo, args.methods,
        progress=not args.quiet, figures=args.figures, observation=args.observation, demo_source=args.demo_source,
        device=args.device, corruption=corruption, video=args.video, video_episodes=args.video_episodes,
    )  # fmt: skip
    if args.json:
        print(f"wrote {args.json}")


def _offline(args: argparse.Namespace) -> None:

    _check_output(args.json, "--json", "file")
    experiment = load_offline_experiment(args.config, _overrides(args))
    with tracking(args.track):
        result = evaluate_offline(experiment, args.run, args.episodes, args.json, args.methods, progress=not args.quiet)
    for method, metrics in result["methods"].items():
        lo, hi = metrics["success_ci95"]
        score = metrics["normalised_score"]
        print(f"{method:4s} success {metrics['success_rate']:.2f} [{lo:.2f}, {hi:.2f}]  "
              f"return {metrics['return_mean']:.1f}  score {'n/a' if score is None else f'{score:.1f}'}")  # fmt: skip
    if args.json:
        print(f"wrote {args.json}")


def _run(args: argparse.Namespace) -> None:

    _check_output(args.out, "--out", "folder")
    # the one YAML reader: a missing file, a duplicate key or a non-UTF-8 file is named like in every config
    backend = _read_yaml(args.perception_config.resolve()) if args.perception_config else None
    experiment = load_experiment(args.config, _overrides(args))
    report = run_instruction(
        experiment, args.run, args.instruction, args.out, args.variant,
        args.perception, backend, experiment.config.eval.seed, policy=args.policy, demo_file=args.demo,
    )  # fmt: skip
    outcome = "reached the goal" if report.success else "did not reach the goal"
    print(f"{outcome} ({report.goal}) in variant {report.variant}; "
          f"failure={report.failed}; video {report.video}; report {args.out / 'report.json'}")  # fmt: skip


def _demo_make(args: argparse.Namespace) -> None:


    config = load_config(args.config)
    _check_output(args.out, "--out", "file")
    task = make_task(config)
    demo = task.scripted_demo(seed=args.seed)
    if args.corrupt:
        spec = parse_corruption(args.corrupt)
        demo = corrupt(demo, spec, task, args.seed)
        for warning in check_demo(demo, task, f"{args.config} corrupted by {spec}"):
            print(f"warning: {warning}", file=sys.stderr)
    path = demo.save(args.out)
    print(f"wrote {config.task} demo of variant '{config.variant}' ({len(demo.points)} points) to {path}")


def _render(args: argparse.Namespace) -> None:


    task = make_task(load_config(args.config))
    _check_output(args.out, "--out", "file")
    env = task.make_env(render_mode="rgb_array")
    try:
        env.reset(seed=args.seed, options=task.reset_options())
        frame = task.render_frame(env)
    finally:
        env.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(args.out)
    print(f"wrote {frame.shape[1]}x{frame.shape[0]} frame to {args.out}")


def _plot(args: argparse.Namespace) -> None:
    _check_output(args.out, "--out", "folder")
    for path in plot_run(args.run, args.out):
        print(f"wrote {path}")


def _add_track_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--track", choices=TRACKERS,
        help="where training scalars go besides run/logs/STAGE.csv (always written): tensorboard (the default where "
        "it is installed; run/logs/tensorboard/STAGE), wandb, or none",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mstt",
        description="Masked Skill Token Training: offline skills that transfer zero-shot to "
        "structurally changed worlds from one observation-only demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("collect", help="collect a source dataset with the scripted expert (Minari)")
    p.add_argument("config", help="a SOURCE variant config, e.g. configs/maze/source.yaml")
    p.add_argument("--out", help="datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--transitions", type=int, help="steps to record (default: the config's)")
    p.add_argument("--seed", type=int, help="seed (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_collect)

    p = sub.add_parser("train", help="train tokenizer, critic, generator and BC on the source data")
    p.add_argument("config", help="an experiment config, e.g. configs/maze/mstt.yaml")
    p.add_argument("--run", required=True, type=Path, help="run folder (resumed if it exists)")
    p.add_argument("--stages", nargs="+", metavar="STAGE",
                   help="train only these stages (and those they need), e.g. diffuser dara-t1-5pct")  # fmt: skip
    p.add_argument(
        "--device", type=_device_option, help="cpu, cuda, cuda:N or auto (default: the config's train.device)"
    )
    _add_override_options(p, trained=False)
    _add_track_option(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="zero-shot transfer to every target variant, all methods")
    p.add_argument("config", help="the experiment config the run was trained with")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--episodes", type=int, help="episodes per variant and method")
    p.add_argument("--json", type=Path, help="metrics JSON to write")
    p.add_argument("--demo", type=Path, help="demo JSON to use instead of the scripted demos")
    p.add_argument(
        "--demo-source", choices=["geometric", "hf", "openai"],
        help="read each variant's demo off its rendered picture with this perception backend (hf/openai take "
        "their settings from the default perception config)",
    )
    p.add_argument("--methods", nargs="+", help="subset of methods")
    p.add_argument(
        "--device", type=_device_option,
        help="cpu, cuda, cuda:N or auto (default: the device each model was trained for)",
    )
    p.add_argument(
        "--observation", choices=["state", "pixels"],
        help="what the agent sees (default: the config's eval.observation): state = the simulator's observation (in "
        "the house: GPS + compass, the exact pose); pixels = rendered frames only (the maze's top-down frame; the "
        "house's egocentric frame, located by the run's localizer stage)",
    )
    p.add_argument(
        "--figures", type=Path,
        help="folder for one PNG per variant of a maze (demo, kept/dropped skills, agent paths) or a house (its map, "
        "the demo, agent paths)",
    )  # fmt: skip
    p.add_argument(
        "--corrupt", metavar="NAME[=LEVEL]",
        help="corrupt every variant's demo first (agent/corruptions.py: corner_cut, sparse, calibration, gap, detour, "
        "jitter, time_warp); a corrupted demo the acceptance check refuses is reported, not run",
    )
    p.add_argument(
        "--video", type=Path, metavar="DIR",
        help="also film the first episodes of every variant and method as DIR/VARIANT-METHOD-epN.gif (the task's "
        "camera, the demo's route and the agent's plan drawn over it); the numbers do not change",
    )
    p.add_argument(
        "--video-episodes", type=int, default=1, metavar="K", help="episodes filmed per variant and method (default 1)"
    )
    _add_override_options(p, trained=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_eval, track=None)  # eval of an offline config trains missing methods: default tracker

    p = sub.add_parser("offline", help="offline RL: train DDS, IQL and BC on one source dataset and evaluate all")
    p.add_argument("config", help="an offline experiment config, e.g. configs/offline/umaze.yaml")
    p.add_argument("--run", required=True, type=Path, help="run folder (resumed if it exists)")
    p.add_argument("--episodes", type=int, help="episodes per method (default: the config's)")
    p.add_argument("--json", type=Path, help="metrics JSON to write")
    p.add_argument(
        "--methods", nargs="+",
        help="subset of dds, iql, bc (trained here) and d3rlpy_iql, d3rlpy_bc (exported by "
        "results/offline-rl-d3rlpy/run_seed.sh)",
    )  # fmt: skip
    _add_override_options(p, trained=False)
    _add_track_option(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_offline)

    p = sub.add_parser("run", help="the agent: instruction + picture -> demo -> mask -> plan and act")
    p.add_argument("instruction", help='e.g. "go to the red ball"')
    p.add_argument("--config", required=True, help="the experiment config the run was trained with")
    p.add_argument("--run", required=True, type=Path, help="trained run folder")
    p.add_argument("--variant", help="target world (default: the config's first target)")
    p.add_argument("--perception", default="geometric", choices=["geometric", "hf", "openai"])
    p.add_argument("--perception-config", type=Path, help="YAML with the backend's fields (model, base_url, ...)")
    p.add_argument("--out", type=Path, default=Path("out/run"), help="folder for demo, overlay, video, report")
    _add_override_options(p, trained=True)
    p.add_argument(
        "--policy", default="mstt", choices=AGENT_POLICIES,
        help="how the agent acts on the demo: MSTT's skills (default), the demo mask with a constant critic, or "
        "following the demo's route (no learned part)",
    )
    p.add_argument("--demo", type=Path, help="reuse this demo of the world instead of reading one off the picture")
    p.set_defaults(func=_run)

    p = sub.add_parser("demo-make", help="write the scripted observation-only demo of a variant")
    p.add_argument("config", help="a variant config, e.g. configs/maze/t1.yaml")
    p.add_argument("--out", required=True, help="demo JSON file to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--corrupt", metavar="NAME[=LEVEL]",
        help="write an imperfect demo: the scripted one corrupted (corner_cut, sparse, calibration, gap, detour, "
        "jitter, time_warp); refused if the acceptance check refuses it",
    )
    p.set_defaults(func=_demo_make)

    p = sub.add_parser("render", help="render a variant's first frame to a PNG")
    p.add_argument("config")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_render)

    p = sub.add_parser("bench", help="benchmarks quoted in BENCHMARKS.md")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("collect", help="collection rate vs raw env.step, median of runs")
    b.add_argument("config")
    b.add_argument("--transitions", type=int, default=100_000)
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--json", type=Path, help="also write the result, with its provenance, to this JSON file")
    b.set_defaults(func=_bench_collect)

    b = bench.add_parser("plan", help="decision latency: batched planner vs one-at-a-time reference")
    b.add_argument("config", help="the experiment config the run was trained with")
    b.add_argument("--run", required=True, type=Path)
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    b.add_argument("--candidates", type=int, default=64, help="N, candidates per decision")
    b.add_argument("--json", type=Path, help="also write the result, with its provenance, to this JSON file")
    _add_override_options(b, trained=True)
    b.set_defaults(func=_bench_plan)

    b = bench.add_parser("tokens", help="route purity of skill tokens and demo-mask coverage/leakage per route")
    b.add_argument("config", help="the experiment config the run was trained with (targets = one open route each)")
    b.add_argument("--run", required=True, type=Path)
    b.add_argument("--episodes", type=int, help="source episodes to encode (default: all)")
    b.add_argument("--json", type=Path, help="also write the result, with its provenance, to this JSON file")
    _add_override_options(b, trained=True)
    b.set_defaults(func=_bench_tokens)

    b = bench.add_parser("localizer", help="the house localizer's pose errors on held-out source and target frames")
    b.add_argument("config", help="the experiment config the run was trained with (with a localizer section)")
    b.add_argument("--run", required=True, type=Path, help="a run folder with a trained localizer stage")
    b.add_argument("--frames", type=int, help="frames per variant (default: localizer.frames.report_frames)")
    b.add_argument("--json", type=Path, help="also write the result, with its provenance, to this JSON file")
    _add_override_options(b, trained=True)
    b.set_defaults(func=_bench_localizer)

    p = sub.add_parser("plot", help="training curves of a run: one PNG per stage from run/logs/STAGE.csv")
    p.add_argument("run", type=Path, help="a run folder trained by `mstt train` or `mstt offline`")
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: RUN/logs)")
    p.set_defaults(func=_plot)

    p = sub.add_parser("push", help="upload a trained run folder to the Hugging Face Hub, model card first")
    p.add_argument("run", type=Path, help="a run folder trained by `mstt train` or `mstt offline`")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME", help="the Hub model repo (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    p.set_defaults(func=_push)

    p = sub.add_parser("theory", help="the tabular masked-Bellman check (the paper's Figure 3)")
    p.add_argument("--json", type=Path, help="curve as JSON")
    p.add_argument("--png", type=Path, help="plot as PNG")
    p.set_defaults(func=_theory)
    return parser


def _bench_collect(args: argparse.Namespace) -> None:

    _check_output(args.json, "--json", "file")
    task = make_task(load_config(args.config))
    result = collection_rate(task, args.transitions, args.repeats)
    settings = {"task": task.config.model_dump(mode="json"), "transitions": args.transitions, "repeats": args.repeats}
    result["provenance"] = bench_provenance("collect", settings)
    _write_bench(result, args.json)
    print(f"machine: {result['machine']}")
    print(f"collect (expert + env): median {result['collect_median']:,.0f} transitions/s")
    print(f"raw env.step (zeros):   median {result['raw_env_step_median']:,.0f} steps/s")
    print(f"runs: collect {[round(r) for r in result['collect_runs']]}, raw {[round(r) for r in result['raw_runs']]}")


def _bench_plan(args: argparse.Namespace) -> None:



    _check_output(args.json, "--json", "file")
    torch.set_num_threads(args.threads)
    experiment = load_experiment(args.config, _overrides(args))
    check_run_matches(args.run, experiment)


    planner = replace(experiment.config.planner, n_candidates=args.candidates)
    models = load_models(args.run)
    variant, demo_file = next(iter(experiment.demo_files.items()))  # the first target's demo, as `mstt eval` reads it
    demo = Demo.load(demo_file)
    mask, report = demo_mask(demo, models, experiment.config.mask)
    print(f"demo of {variant}: {demo_file}")
    result = planning_latency(models, planner, args.repeats, demo=(mask, report.demo_windows, demo.positions))
    settings = {"repeats": args.repeats, "threads": args.threads, "candidates": args.candidates, "variant": variant}
    result["provenance"] = bench_provenance("plan", settings, experiment, str(models.generator.device))
    _write_bench(result, args.json)
    print(json.dumps(result, indent=1))


def _bench_tokens(args: argparse.Namespace) -> None:


    _check_output(args.json, "--json", "file")
    experiment = load_experiment(args.config, _overrides(args))
    check_run_matches(args.run, experiment)
    models = load_models(args.run)
    result = token_routes(experiment, models, args.episodes)
    settings = {"episodes": args.episodes}
    result["provenance"] = bench_provenance("tokens", settings, experiment, str(models.generator.device))
    _write_bench(result, args.json)
    print(json.dumps(result, indent=1))


def _bench_localizer(args: argparse.Namespace) -> None:
    _check_output(args.json, "--json", "file")
    experiment = load_experiment(args.config, _overrides(args))
    check_run_matches(args.run, experiment)
    folder = args.run / LOCALIZER_STAGE
    if not (folder / CONFIG_NAME).exists():
        raise FileNotFoundError(f"{folder} not found: run `mstt train {args.config} --run {args.run} --stages "
                                f"{LOCALIZER_STAGE}` first")  # fmt: skip
    result = localizer_errors(experiment, Localizer.from_pretrained(folder), args.frames)
    result["provenance"] = bench_provenance("localizer", {"frames": result["frames"]}, experiment, "cpu")
    _write_bench(result, args.json)
    print(json.dumps(result["variants"], indent=1))


def _write_bench(result: dict[str, object], path: Path | None) -> None:
    if path is not None:
        write_json_atomic(result, path)


def _push(args: argparse.Namespace) -> None:
    pushed = push_run(args.run, args.repo_id, private=args.private)
    print(f"pushed {len(pushed.files)} files of {args.run} to {pushed.repo_url} (.training/ is never uploaded)")


def _theory(args: argparse.Namespace) -> None:

    _check_output(args.json, "--json", "file")
    _check_output(args.png, "--png", "file")
    config = TheoryConfig()
    block = provenance({"theory": asdict(config)}, {"theory": config.seed}, device=None)  # numpy only, no torch
    result = run_theory(config, args.json, args.png, block)
    for p_min, gap in zip(result["p_min"], result["gap"]):
        print(f"p_min {p_min:5.2f}  gap {gap:.6f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    pin_git_state()  # a result names the code this process loaded, even if the checkout changes while it runs
    try:
        _resolve_input_files(args)
        _resolve_run(args)
        func(args)
    except (ConfigError, FileNotFoundError, ValueError, BackendError, UnwritablePathError) as err:
        print(f"mstt {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"mstt {args.command}: interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
