#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the runner,
# its training extra and the test tools, and (on Debian/Ubuntu, as root) Fashion-MNIST
# from Debian's package, a real dataset that needs no internet. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "setup: could not install dataset-fashion-mnist; the demo downloads Fashion-MNIST when online," \
                "else give it the folder of its four .gz files: bash scripts/demo.sh --data-dir DIR" \
                "(or RUNNER_DATA_DIR=DIR bash scripts/demo.sh)" >&2
fi

# An install of this very pyproject.toml is already there: nothing to do, so the test
# commands start at once. A changed pyproject.toml (or a new checkout) installs again.
stamp=.venv/installed-pyproject.toml
if [ -f "$stamp" ] && cmp -s pyproject.toml "$stamp" && [ -x .venv/bin/runner ]; then
    exit 0
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, at the CPU build this machine has on disk, so the range in pyproject.toml is
# already satisfied; users with GPUs install their CUDA build of torch instead.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q torch
fi
.venv/bin/python -m pip install -q -e ".[train,dev]"
cp pyproject.toml "$stamp"
