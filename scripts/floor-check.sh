#!/usr/bin/env bash
# The version floors, tried: install the oldest versions pyproject.toml allows of torch, ray,
# optuna, onnx, onnxscript and onnxruntime (everything else at its newest) in a virtual
# environment of their own, then run a 1-epoch `runner train`, `runner export --best` and a
# 1-trial `runner tune` there on CIFAR-10.
#
#   bash scripts/floor-check.sh [--venv DIR] [--data-dir DIR]
#
# The venv (default /tmp/floor-venv) is kept, so a second run only runs the checks. On
# Linux, PyPI has only CUDA builds of torch 2.9, so the first run downloads several GB.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=/tmp/floor-venv
data_dir="$(realpath -m "${RUNNER_DATA_DIR:-../shared/datasets/cifar-10-batches-py}")"
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --data-dir) data_dir="$(realpath -m "$2")"; shift 2 ;;
        *) echo "floor-check: unknown argument $1; see the top of $0" >&2; exit 2 ;;
    esac
done

# NAME==FLOOR for the packages whose floors were chosen by this check, read from pyproject.toml.
pins=$(python3 - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["train"]:
    name, floor = re.match(r"([\w.\[\]-]+)>=([\w.]+)", requirement).groups()
    if name.split("[")[0] in ("torch", "ray", "optuna", "onnx", "onnxscript", "onnxruntime"):
        print(f"{name}=={floor}")
EOF
)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC2086  # one argument per pin
"$venv/bin/pip" install -q $pins ".[train]"
"$venv/bin/pip" list 2>/dev/null | grep -Ei "^(torch|ray|optuna|onnx|onnxscript|onnxruntime|numpy|pydantic) " | tr -s ' '

work=$(mktemp -d)
trial="data: {dataset: cifar10, val_images: 100, val_pairs: 100}
model: {family: unet, widths: [4, 8], bottleneck: 16}"
printf '# floor-check: a tiny U-Net\n%s\ntrain: {lr: 2.0e-3, batch_size: 32, epoch_pairs: 256}\n' "$trial" > "$work/tiny.yaml"
printf '# floor-check: one tiny trial\ntune: {samples: 1, max_epochs: 1}\n%s\ntrain: {lr: {loguniform: [1.0e-3, 3.0e-3]}, batch_size: 32, epoch_pairs: 256}\n' \
    "$trial" > "$work/tune.yaml"
cd "$work"
"$venv/bin/runner" train --config tiny.yaml --max-epochs 1 --name train --results R --data-dir "$data_dir" > train.log 2>&1
"$venv/bin/runner" export --best --experiment train --results R -o E
"$venv/bin/runner" tune --space tune.yaml --name tune --results R --data-dir "$data_dir" > tune.log 2>&1
grep -h "1 trial: 1 finished" tune.log
echo "floor-check: train, export and a 1-trial tune ran at the floors above (logs in $work)"
