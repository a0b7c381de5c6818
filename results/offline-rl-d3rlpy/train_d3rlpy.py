"""Trains d3rlpy's IQL or BC on the .npz that export_dataset.py wrote (the transitions our IQL trains on) and exports
the greedy policy with save_policy (TorchScript: (B, 6) observation ++ desired goal -> (B, 2) action) into
RUN/<name>/policy.pt, where `mstt offline --methods d3rlpy_iql d3rlpy_bc` evaluates it. Run with the d3rlpy venv
(setup.sh).

Presets. matched: our configs/offline/umaze.yaml hyper-parameters (IQL: expectile 0.7, gamma 0.99, tau 0.005,
weight_temp 10 = our temperature, both being the inverse temperature beta of exp(beta * advantage), max weight 100,
2 x 256 ReLU MLPs, Adam 3e-4, batch 256, 20,000 steps; BC: 3 x 256, Adam 1e-3, batch 512, 10,000 steps) and our
input standardisation (mean / std of the training inputs, as IQLLearner.set_normalisation). default: d3rlpy's
own defaults (IQL weight_temp 3, no observation scaler; BC batch 100, 2 x 256) at the same number of steps.

    /tmp/d3rlpy-venv/bin/python results/offline-rl-d3rlpy/train_d3rlpy.py data/offline-large-iql.npz \
        --algo iql --seed 0 --run runs/offline-large
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import d3rlpy
import numpy as np
import torch
from d3rlpy.dataset import MDPDataset
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.preprocessing import StandardObservationScaler

MATCHED_STEPS = {"iql": 20_000, "bc": 10_000}


def make_algo(algo: str, preset: str, inputs: np.ndarray, batch_size: int | None):  # type: ignore[no-untyped-def]
    if preset == "matched":
        # torch's unbiased std, floored as IQLLearner.set_normalisation does
        scaler = StandardObservationScaler(mean=inputs.mean(0), std=np.maximum(inputs.std(0, ddof=1), 1e-6))
        if algo == "iql":
            encoder = VectorEncoderFactory(hidden_units=[256, 256])
            return d3rlpy.algos.IQLConfig(
                observation_scaler=scaler, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
                actor_encoder_factory=encoder, critic_encoder_factory=encoder, value_encoder_factory=encoder,
                batch_size=batch_size or 256, gamma=0.99, tau=0.005, n_critics=2, expectile=0.7, weight_temp=10.0,
                max_weight=100.0,
            ).create(device="cpu:0")  # fmt: skip
        return d3rlpy.algos.BCConfig(
            observation_scaler=scaler, learning_rate=1e-3, batch_size=batch_size or 512,
            encoder_factory=VectorEncoderFactory(hidden_units=[256, 256, 256]),
        ).create(device="cpu:0")  # fmt: skip
    config = d3rlpy.algos.IQLConfig() if algo == "iql" else d3rlpy.algos.BCConfig()
    if batch_size:
        config.batch_size = batch_size
    return config.create(device="cpu:0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the .npz of export_dataset.py")
    parser.add_argument("--algo", choices=("iql", "bc"), required=True)
    parser.add_argument("--preset", choices=("matched", "default"), default="matched")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="training steps (default: matched: 20,000 IQL, 10,000 BC)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--run", type=Path, help="run folder; the policy goes to RUN/NAME/policy.pt")
    parser.add_argument("--name", help="folder name in the run (default d3rlpy_<algo>, +_default for that preset)")
    parser.add_argument("--json", type=Path, help="write the timing report here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    d3rlpy.seed(args.seed)
    data = np.load(args.data)
    dataset = MDPDataset(data["observations"], data["actions"], data["rewards"], data["terminals"],
                         data["timeouts"])  # fmt: skip
    transitions = dataset.transition_count
    assert transitions == len(data["prim_actions"]), (transitions, len(data["prim_actions"]))
    inputs = np.concatenate([data["prim_observations"], data["prim_goals"]], axis=1)
    algo = make_algo(args.algo, args.preset, inputs, args.batch_size)
    steps = args.steps or MATCHED_STEPS[args.algo]
    started = time.perf_counter()
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, logger_adapter=NoopAdapterFactory(),
             show_progress=False, save_interval=steps + 1)  # fmt: skip
    seconds = time.perf_counter() - started
    report = {"algo": f"d3rlpy {args.algo}", "preset": args.preset, "seed": args.seed, "steps": steps,
              "batch_size": algo.config.batch_size, "seconds": seconds, "steps_per_s": steps / seconds,
              "transitions": transitions, "d3rlpy": d3rlpy.__version__, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads()}  # fmt: skip
    if args.run is not None:
        name = args.name or f"d3rlpy_{args.algo}" + ("" if args.preset == "matched" else "_default")
        folder = args.run / name
        folder.mkdir(parents=True, exist_ok=True)
        algo.save_policy(str(folder / "policy.pt"))
        (folder / "report.json").write_text(json.dumps(report, indent=1))
        report["policy"] = str(folder / "policy.pt")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
