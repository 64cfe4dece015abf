#!/usr/bin/env bash
# Set up (as scripts/setup.sh) and run the tests, on every core (pytest-xdist).
#
#   bash scripts/test.sh          every test, what CI runs; lists the 15 slowest at the end
#   bash scripts/test.sh --fast   the tier for every change: unit tests and tiny in-process fits,
#                                 no Ray, no processes started, no benchmarks (tests/tiers.py)
#
# Further arguments go to pytest, e.g.: bash scripts/test.sh --fast -k separate
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# loadgroup: the tests that start Ray share one worker (tests/tiers.py), the rest spread.
run=(.venv/bin/python -m pytest -q -n auto --dist loadgroup)
if [ "${1:-}" = "--fast" ]; then
    shift
    exec "${run[@]}" -m fast "$@"
fi
exec "${run[@]}" --durations=15 "$@"
