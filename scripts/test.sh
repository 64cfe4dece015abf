#!/usr/bin/env bash
# Set up (as scripts/setup.sh) and run the tests.
#
#   bash scripts/test.sh          every test, what CI runs; lists the 15 slowest at the end
#   bash scripts/test.sh --fast   the tier for every change: unit tests and tiny in-process fits,
#                                 no Ray, no processes started, no benchmarks (tests/tiers.py)
#
# Further arguments go to pytest, e.g.: bash scripts/test.sh --fast -k separate
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--fast" ]; then
    shift
    exec .venv/bin/python -m pytest -q -m fast "$@"
fi
exec .venv/bin/python -m pytest -q --durations=15 "$@"
