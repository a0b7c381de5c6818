"""Times our IQL (skills/iql.py train_iql) on the transitions of export_dataset.py's .npz, matched config (umaze.yaml
iql), one torch thread. Run with the project's venv; bench.sh runs it beside d3rlpy's IQL."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mstt.agent.experiments.offline import load_offline_experiment
from mstt.skills.iql import train_iql


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--config", default="configs/offline/large.yaml")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    npz = np.load(args.data)
    data = {k.removeprefix("prim_"): npz[k] for k in npz.files if k.startswith("prim_")}
    config = replace(load_offline_experiment(args.config).config.iql, steps=args.steps, device="cpu")
    started = time.perf_counter()
    train_iql(data, config, "continuous", progress=False)
    seconds = time.perf_counter() - started
    out = {"algo": "mstt iql", "steps": args.steps, "batch_size": config.batch_size, "seconds": seconds,
           "steps_per_s": args.steps / seconds, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
