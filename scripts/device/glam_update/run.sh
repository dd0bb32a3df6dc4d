#!/usr/bin/env bash
# One call on a lent GPU machine (see README.md): wheels, a random-init gemma-3-270m, the benchmark.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
mkdir -p /tmp/cfg && cp .gpu/gemma-config/*.json /tmp/cfg/ && gunzip -c .gpu/gemma-config/tokenizer.json.gz > /tmp/cfg/tokenizer.json
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 240 python3 benchmarks/bench_glam_update.py --preset paper --device cuda --random-from /tmp/cfg --updates 2 \
  2>&1 | grep -v Warning | tee "$OUT/update.txt"
timeout 240 python3 benchmarks/bench_glam_update.py --preset paper --device cuda --random-from /tmp/cfg --updates 2 \
  --variants tuned --compile 2>&1 | grep -v Warning | tee "$OUT/update-compile.txt"
