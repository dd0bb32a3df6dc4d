#!/usr/bin/env bash
# The tabula-rasa baselines of docs/results/glam.md, on the GLAM cpu preset's level:
#   1. a learning-rate sweep for Symbolic-PPO with and without memory (LSTM), seed 0, judged on
#      the *training* levels only (the last 100 training episodes' success; see glam_select_lr.py);
#   2. three seeds of each at its chosen learning rate, long enough to reach 0.8 success, with a
#      checkpoint at the GLAM cpu preset's budget (8,192 steps) evaluated on the held-out levels.
# Resumable: finished runs are skipped, killed ones continue from their last checkpoint.
set -euo pipefail
OUT=${OUT:-runs/glam}
SWEEP_STEPS=${SWEEP_STEPS:-51200}
LRS=${LRS:-"1e-4 3e-4 1e-3"}
SEEDS=${SEEDS:-"0 1 2"}
LONG_STEPS=${LONG_STEPS:-102400}
export OMP_NUM_THREADS=1

train() {  # run-folder, then flags
  local run=$1; shift
  if [ -f "$run/done.json" ]; then echo "done: $run"; return; fi
  local resume=""; ls "$run"/checkpoints/step_*.zip >/dev/null 2>&1 && resume="--resume"
  [ -z "$resume" ] && rm -rf "$run"
  .venv/bin/llmrl train symbolic-ppo --preset cpu --torch-threads 1 --out "$run" $resume --quiet "$@"
}

for memory in false true; do
  arch=$([ "$memory" = true ] && echo lstm || echo mlp)
  for lr in $LRS; do
    train "$OUT/sweep-$arch-lr$lr" --memory "$memory" --ppo.learning-rate "$lr" --total-env-steps "$SWEEP_STEPS" \
      --eval-episodes 0 --checkpoint-every 10240 --label "symbolic-ppo-$arch-lr$lr"
  done
  lr=$(.venv/bin/python scripts/glam_select_lr.py "$OUT"/sweep-$arch-lr*)
  echo "$arch: learning rate $lr"
  for s in $SEEDS; do
    train "$OUT/symbolic-$arch-s$s" --memory "$memory" --ppo.learning-rate "$lr" --seed "$s" \
      --total-env-steps "$LONG_STEPS" --checkpoint-every 8192 --label "symbolic-ppo-$arch"
    [ -f "$OUT/symbolic-$arch-s$s/eval-8192/results.json" ] || \
      .venv/bin/python scripts/glam_eval_checkpoint.py "$OUT/symbolic-$arch-s$s" 8192
  done
done
