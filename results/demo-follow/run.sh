#!/usr/bin/env bash
# What the learned skills add over following the demo (issue 19): the exact commands behind
# results/demo-follow/*.json, on the seed-0 models of configs/maze/mstt.yaml and configs/fetch/mstt.yaml.
#   mstt train configs/maze/mstt.yaml --run runs/maze ; mstt train configs/fetch/mstt.yaml --run runs/fetch
# Usage: results/demo-follow/run.sh [maze-clean|maze-corrupt|fetch]   (from the repository root)
# The fetch-corrupt-*.json files here were measured with Fetch's demo match at 1.5 cm, the default before 8ee8756;
# fetch-clean.json and fetch-match-0.0075/ (its COMMAND.md) at the current 0.75 cm.
# The maze files here were measured with the demos read at their own pace (their timestamps); the maze reads them by
# arc length since mask.use_timestamps: false (demo-timing/), so add --set mask.use_timestamps=true to reproduce them.
# The corrupted maze demos at 100 episodes with mask_only: maze-corrupt-100/ (its COMMAND.md).
set -euo pipefail
export OMP_NUM_THREADS=1
out=results/demo-follow
mstt=${MSTT:-.venv/bin/mstt}
# Two levels each, the higher one as far as the demo check accepts on most variants (calibration 0.05 and jitter
# 0.2 put points of most maze routes inside walls; Fetch corner_cut 5 cuts 1.8 cm into the zone).
maze_corruptions="corner_cut=3 gap=0.2 calibration=0.03 sparse=5 jitter=0.15 detour=4 corner_cut=2 sparse=10 gap=0.1
calibration=0.02 calibration=0.05 jitter=0.1 detour=2 time_warp=0.5 time_warp=1"
fetch_corruptions="corner_cut=3 corner_cut=4 sparse=5 sparse=3 calibration=0.1 calibration=0.2 gap=0.1 gap=0.2
detour=1 detour=2 jitter=0.2 jitter=0.4 time_warp=0.5 time_warp=1"

case "${1:-all}" in
maze-clean|all)
  # T1-T3 forward and the nine new tasks (reversed, goal halfway, start halfway), 100 episodes each
  $mstt eval configs/maze/new_tasks.yaml --run runs/maze --episodes 100 --quiet --json $out/maze-clean-and-new-tasks.json
  ;;&
maze-corrupt|all)
  for c in $maze_corruptions; do
    $mstt eval configs/maze/mstt.yaml --run runs/maze --episodes 50 --methods mstt demo_tracker --corrupt "$c" \
      --quiet --json "$out/maze-corrupt-$c.json"
  done
  ;;&
fetch|all)
  $mstt eval configs/fetch/mstt.yaml --run runs/fetch --episodes 100 --methods mstt mask_only demo_tracker unmasked bc \
    --quiet --json $out/fetch-clean.json
  for c in $fetch_corruptions; do
    $mstt eval configs/fetch/mstt.yaml --run runs/fetch --episodes 100 --methods mstt demo_tracker --corrupt "$c" \
      --quiet --json "$out/fetch-corrupt-$c.json"
  done
  ;;
esac
.venv/bin/python results/tables.py $out > $out/tables.md
