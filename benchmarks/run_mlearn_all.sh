#!/usr/bin/env bash
# Run the mlearn benchmark for all six elements, two at a time (one torch thread each, so the
# two runs share the 2 cores without oversubscription). Usage: bash benchmarks/run_mlearn_all.sh [MAX_TIME]
set -euo pipefail
max_time=${1:-1100}
data=${DATA_DIR:-../shared/data/mlearn}
cd "$(dirname "$0")/.."
export MATLOOP_NUM_THREADS=1
for pair in "Ni Cu" "Li Mo" "Si Ge"; do
  for el in $pair; do
    python benchmarks/mlearn.py --data-dir "$data" --element "$el" --max-time "$max_time" \
      --config benchmarks/configs/mlearn_bpnn.yaml --work-dir benchmarks/runs \
      --json "benchmarks/results/mlearn_bpnn_${el}.json" > "benchmarks/runs/mlearn_${el}.log" 2>&1 &
  done
  wait
done
python benchmarks/mlearn_table.py benchmarks/results/mlearn_bpnn_*.json
