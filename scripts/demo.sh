#!/usr/bin/env bash
# The main job, offline, end to end: search a small U-Net space on Fashion-MNIST (Debian's
# package), export the best trial to ONNX, separate test mixtures with onnxruntime and
# score them against the Average baseline. Ends with separated images in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
name="demo-$(date +%Y%m%d-%H%M%S)"

runner tune --space search_spaces/demo.yaml --name "$name"
runner export --best --experiment "$name" -o export/
runner mixtures --dataset fashion-mnist --count 100 -o "out/$name/pairs"
separate "out/$name/pairs/mixtures" -o "out/$name/separated" --model "export/$name-unet.onnx"
runner score --pairs "out/$name/pairs" --outputs "out/$name/separated"
echo "separated images: out/$name/separated/ (e.g. 00000_1.png and 00000_2.png)"
