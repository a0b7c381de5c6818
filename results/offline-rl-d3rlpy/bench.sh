#!/usr/bin/env bash
# Training steps per second of our IQL and d3rlpy's IQL, one after the other in one run, on the same transitions
# (export_dataset.py's .npz), matched hyper-parameters, batch 256, one torch thread. Usage: bench.sh [STEPS]
set -euo pipefail
steps=${1:-2000}
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export OMP_NUM_THREADS=1
venv=${D3RLPY_VENV:-/tmp/d3rlpy-venv}
data=data/offline-large-iql.npz
out=results/offline-rl-d3rlpy
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python $out/bench_ours.py "$data" --steps "$steps" --json "$tmp/ours.json" 2>&1 | grep '^{'
"$venv/bin/python" $out/train_d3rlpy.py "$data" --algo iql --steps "$steps" --json "$tmp/d3rlpy.json" 2>&1 | grep '^{'
.venv/bin/python - "$tmp" "$out/steps-per-s.json" <<'PY'
import json, platform, sys, datetime
tmp, dest = sys.argv[1:]
runs = [json.load(open(f"{tmp}/{n}.json")) for n in ("ours", "d3rlpy")]
out = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
       "runs": runs, "ratio_ours_over_d3rlpy": runs[0]["steps_per_s"] / runs[1]["steps_per_s"]}
json.dump(out, open(dest, "w"), indent=1)
print(json.dumps(out))
PY
