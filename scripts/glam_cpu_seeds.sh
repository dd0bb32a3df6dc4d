#!/usr/bin/env bash
# The GLAM cpu-preset experiment of docs/results/glam.md: seeds one after another (each uses both
# cores), resumable: re-running the script continues killed runs and skips finished ones.
set -euo pipefail
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/glam}
for s in $SEEDS; do
  run="$OUT/cpu-s$s"
  if [ -f "$run/eval/results.json" ]; then echo "seed $s done"; continue; fi
  resume=""; [ -f "$run/checkpoints/latest.pt" ] && resume="--resume"
  [ -z "$resume" ] && rm -rf "$run"
  .venv/bin/llmrl train glam --preset cpu --seed "$s" --out "$run" $resume --quiet
done
