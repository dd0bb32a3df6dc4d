#!/usr/bin/env bash
# The GLAM cpu-preset experiment of docs/results/glam.md: the LM policy and its knowledge control
# (the same architecture re-initialised, GLAM's NPAE), seeds one after another (each uses both
# cores); resumable: re-running the script continues killed runs and skips finished ones.
set -euo pipefail
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/glam}
INITS=${INITS:-"pretrained random"}
for init in $INITS; do
  for s in $SEEDS; do
    name=$([ "$init" = pretrained ] && echo "cpu-s$s" || echo "cpu-random-init-s$s")
    label=$([ "$init" = pretrained ] && echo "glam-cpu" || echo "glam-cpu-random-init")
    run="$OUT/$name"
    if [ -f "$run/done.json" ]; then echo "done: $run"; continue; fi
    resume=""; [ -f "$run/checkpoints/latest.pt" ] && resume="--resume"
    [ -z "$resume" ] && rm -rf "$run"
    .venv/bin/llmrl train glam --preset cpu --seed "$s" --init "$init" --label "$label" --out "$run" $resume --quiet
  done
done
