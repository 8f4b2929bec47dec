#!/usr/bin/env bash
# Runs the whole test suite with the Python scripts/setup.sh installed lwrecipe into
# (.venv, the distribution's python3); fails if no test was collected (pytest exit 5).
# Arguments go to pytest: `bash scripts/test.sh -m "not slow"` is the quick part
# (docs/reliability.md, "Choosing tests").
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
if [ ! -x "$python" ]; then
  echo "error: .venv/bin/python: missing (run scripts/setup.sh first)" >&2
  exit 1
fi
# as an activated venv: its python3 first on PATH (host-tool recipes in the tests call python3)
export PATH="$PWD/.venv/bin:$PATH"
"$python" -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: no tests were collected" >&2
  exit 1
fi
exit "$status"
