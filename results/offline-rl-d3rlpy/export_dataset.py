"""Exports exactly what our primitive IQL trains on (episode_dicts -> primitive_transitions of an offline config) to
an .npz that d3rlpy (its own venv) turns into an MDPDataset. Run with the project's venv.

Observation seen by every policy: observation (4) concatenated with desired_goal (2), as our IQL and BC read it.
d3rlpy builds transitions inside episodes, so each of our episodes is cut after every terminal step (goal reached,
``goal_terminals``): a cut segment is 'terminated' (d3rlpy: next observation unused, terminal = 1), the last
segment of an episode ends in a timeout and keeps the episode's final observation as an extra row whose action and
reward d3rlpy never reads (a timed-out episode of n rows gives n - 1 transitions). The result is the same set of
(s, a, r, s', done) as primitive_transitions, which this script checks before writing.

    .venv/bin/python results/offline-rl-d3rlpy/export_dataset.py configs/offline/large.yaml --out data/large-iql.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mstt.agent.experiments.offline import episode_dicts, load_offline_experiment, primitive_transitions
from mstt.agent.experiments.train import source_data


def mdp_arrays(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """episode_dicts -> flat MDPDataset arrays (observations = obs ++ goal) cut at every terminal."""
    obs, act, rew, term, tout = [], [], [], [], []
    for e in episodes:
        x = np.concatenate([e["observations"], e["goals"]], axis=1)  # (T + 1, S + G)
        steps = len(e["actions"])
        cuts = np.flatnonzero(e["terminals"])  # segment ends (inclusive)
        start = 0
        for end in cuts:
            obs.append(x[start:end + 1]), act.append(e["actions"][start:end + 1]), rew.append(e["rewards"][start:end + 1])
            t = np.zeros(end + 1 - start, np.float32)
            t[-1] = 1.0
            term.append(t), tout.append(np.zeros_like(t))
            start = end + 1
        if start < steps:  # the timed-out tail, plus the final observation as an unread row
            n = steps - start
            obs.append(x[start:steps + 1])
            act.append(np.concatenate([e["actions"][start:], np.zeros((1, e["actions"].shape[1]), np.float32)]))
            rew.append(np.concatenate([e["rewards"][start:], np.zeros(1, np.float32)]))
            term.append(np.zeros(n + 1, np.float32))
            t = np.zeros(n + 1, np.float32)
            t[-1] = 1.0
            tout.append(t)
    return {"observations": np.concatenate(obs).astype(np.float32), "actions": np.concatenate(act).astype(np.float32),
            "rewards": np.concatenate(rew).astype(np.float32), "terminals": np.concatenate(term),
            "timeouts": np.concatenate(tout)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="an offline experiment config, e.g. configs/offline/large.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    experiment = load_offline_experiment(args.config)
    _, loaded = source_data(experiment, progress=False)  # type: ignore[arg-type]
    episodes = episode_dicts(loaded, experiment.config.goal_terminals)
    prim = primitive_transitions(episodes, experiment.config.iql.gamma)
    mdp = mdp_arrays(episodes)
    # The same transitions: count, actions, rewards, dones and the first observations in order.
    rows_used = 1.0 - mdp["timeouts"]
    n = len(prim["actions"])
    assert int(rows_used.sum()) == n, (rows_used.sum(), n)
    used = rows_used.astype(bool)
    assert np.array_equal(mdp["actions"][used], prim["actions"])
    assert np.array_equal(mdp["rewards"][used], prim["returns"])
    assert np.array_equal(mdp["terminals"][used], prim["dones"])
    assert np.array_equal(mdp["observations"][used], np.concatenate([prim["observations"], prim["goals"]], 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **mdp, **{f"prim_{k}": v for k, v in prim.items()})
    print(f"{args.out}: {n} transitions, {int(mdp['terminals'].sum())} terminals, {len(episodes)} episodes, "
          f"obs dim {mdp['observations'].shape[1]}, {time.perf_counter() - started:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
