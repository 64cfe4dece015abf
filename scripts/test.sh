#!/usr/bin/env bash
# Set up (as scripts/setup.sh) and run the whole test suite, slow end-to-end tests included.
# Pass pytest arguments to narrow it, e.g.: bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
