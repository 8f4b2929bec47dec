#!/usr/bin/env bash
# Runs the whole test suite; fails when no test was collected (pytest exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: no tests were collected" >&2
  exit 1
fi
exit "$status"
