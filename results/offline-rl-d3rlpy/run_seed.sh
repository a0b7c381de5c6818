#!/usr/bin/env bash
# One training seed on PointMaze Large: d3rlpy IQL and BC (matched presets) into runs/offline-large-sN, then our IQL
# trained and all three evaluated by `mstt offline` on the same 100 episodes. Usage: run_seed.sh N
set -euo pipefail
seed=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export OMP_NUM_THREADS=1
venv=${D3RLPY_VENV:-/tmp/d3rlpy-venv}
data=data/offline-large-iql.npz
run=runs/offline-large-s$seed
out=results/offline-rl-d3rlpy
[ -f "$data" ] || .venv/bin/python $out/export_dataset.py configs/offline/large.yaml --out "$data"
for algo in iql bc; do
  [ -f "$run/d3rlpy_$algo/policy.pt" ] || "$venv/bin/python" $out/train_d3rlpy.py "$data" --algo $algo --seed "$seed" \
    --run "$run" --json "$out/d3rlpy-$algo-seed$seed.json" 2>&1 | grep '^{'
done
.venv/bin/mstt offline configs/offline/large.yaml --seed "$seed" --run "$run" --episodes 100 \
  --methods d3rlpy_iql d3rlpy_bc iql --json "$out/large-seed$seed.json" --quiet
