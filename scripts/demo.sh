#!/usr/bin/env bash
# The main job, offline, end to end: search a small U-Net space on Fashion-MNIST (Debian's
# package), export the best trial to ONNX, separate test mixtures with onnxruntime and
# score them against the Average baseline. Ends with separated images in out/demo/.
#
#   bash scripts/demo.sh [--data-dir DIR]
#
# DIR: a folder with Fashion-MNIST's four .gz files, where Debian's package is missing
# (setting RUNNER_DATA_DIR=DIR does the same); without either, the runner downloads it.
set -euo pipefail
data=()
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) [ $# -ge 2 ] || { echo "demo: --data-dir needs a folder" >&2; exit 2; }
                    data=(--data-dir "$(realpath -m -- "$2")"); shift 2 ;;
        *) echo "demo: unknown argument $1; usage: bash scripts/demo.sh [--data-dir DIR]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
name="demo-$(date +%Y%m%d-%H%M%S)"

runner tune --space search_spaces/demo.yaml --name "$name" "${data[@]}"
runner export --best --experiment "$name" -o export/
runner mixtures --dataset fashion-mnist --count 100 -o "out/$name/pairs" "${data[@]}"
separate "out/$name/pairs/mixtures" -o "out/$name/separated" --model "export/$name-unet.onnx"
runner score --pairs "out/$name/pairs" --outputs "out/$name/separated"
echo "separated images: out/$name/separated/ (e.g. 00000_1.png and 00000_2.png)"
