#!/usr/bin/env bash
# The GPU acceptance check: run it on a machine with one GPU, in an environment that already
# holds a CUDA build of torch and this project (`pip install -e ".[train,dev]"` after torch).
#
#   bash scripts/gpu-check.sh [--data-dir DIR] [--minutes N] [--skip-tests]
#
# Steps, each recorded in OUT/summary.md and OUT/*.json (OUT: results/gpu-check-<time>/):
#   1. the test suite
#   2. a 4-trial `runner tune` sharing one GPU (--gpus-per-trial 0.25): trials at once, GPU ids
#   3. export of its best trial and `separate` + `runner score` on test mixtures
#   4. the CUDA rows of benchmarks/train_throughput.py (uint8 data on the GPU, bf16,
#      channels-last, torch.compile against eager)
#   5. `runner train --config best-gpu --minutes N` (the built-in best-cpu while there is no
#      best-gpu yet), scored on 500 test mixtures through `separate`
# On a machine without a GPU, steps 2 and 3 run their trials on CPUs and steps 4 and 5 are
# skipped; the summary says which steps were skipped and why.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir="${RUNNER_DATA_DIR:-../shared/datasets/cifar-10-batches-py}"
minutes=10
run_tests=1
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) data_dir="$2"; shift 2 ;;
        --minutes) minutes="$2"; shift 2 ;;
        --skip-tests) run_tests=0; shift ;;
        *) echo "gpu-check: unknown argument $1; see the top of $0" >&2; exit 2 ;;
    esac
done
# The active environment; else the project's own .venv (scripts/setup.sh) when there is one.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
python="${PYTHON:-python}"
out="results/gpu-check-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
log() { echo "gpu-check: $*" | tee -a "$out/steps.log" >&2; }
skip() { echo "{\"skipped\": \"$2\"}" > "$out/$1.json"; log "$1 skipped: $2"; }
# run NAME COMMAND...: the command's output goes to OUT/NAME.log; on failure, its last lines and exit 1
run() {
    local name="$1"; shift
    if ! "$@" > "$out/$name.log" 2>&1; then
        log "$name failed; the end of $out/$name.log:"; tail -5 "$out/$name.log" >&2; exit 1
    fi
}

"$python" - "$out/machine.json" <<'EOF'
import json, sys, torch
facts = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "gpus": []}
if torch.cuda.is_available():
    facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
json.dump(facts, open(sys.argv[1], "w"), indent=2)
EOF
gpus=$("$python" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['gpus']))" "$out/machine.json")
log "torch sees $gpus GPU(s): $(cat "$out/machine.json" | tr -d '\n ')"

# 1. the test suite
if [ "$run_tests" = 1 ]; then
    log "1/5 the test suite"
    set +e
    "$python" -m pytest -q -p no:cacheprovider --junitxml="$out/tests.xml" > "$out/tests.log" 2>&1
    status=$?
    set -e
    tail -1 "$out/tests.log" | tee -a "$out/steps.log"
    echo "{\"exit_status\": $status, \"last_line\": \"$(tail -1 "$out/tests.log" | tr -d '"')\"}" > "$out/tests.json"
else
    skip tests "--skip-tests given"
fi

# 2. four trials sharing one GPU (CPU trials without a GPU)
cat > "$out/share.yaml" <<'EOF'
# gpu-check: four tiny U-Net trials sharing one GPU
tune: {samples: 4, max_epochs: 3, grace_period: 3}
data: {dataset: cifar10, val_images: 200, val_pairs: 200}
model: {family: unet, base_width: {choice: [16, 32]}, depth: 3, output: consistent}
train: {lr: {loguniform: [1.0e-3, 3.0e-3]}, batch_size: 64, epoch_pairs: 2048}
EOF
share_flags=(--cpus-per-trial 1)
if [ "$gpus" -gt 0 ]; then share_flags+=(--gpus-per-trial 0.25); fi
log "2/5 runner tune: 4 trials ${share_flags[*]}"
run tune runner tune --space "$out/share.yaml" --data-dir "$data_dir" --results "$out/results" --name share "${share_flags[@]}"
"$python" - "$out/results/share" "$out/share.json" <<'EOF'
import json, sys
from pathlib import Path
spans, ids = [], {}
for result in sorted(Path(sys.argv[1]).glob("*/result.json")):
    rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    start = rows[0]["timestamp"] - rows[0]["train_seconds"]
    spans.append((start, rows[-1]["timestamp"]))
    ids[result.parent.name] = {"gpu_ids": rows[-1].get("gpu_ids"), "device": rows[-1].get("device"),
                               "precision": rows[-1].get("precision")}
events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
running = most = 0
for _, change in events:
    running += change
    most = max(most, running)
summary = {"trials": len(spans), "most_at_once": most, "per_trial": ids}
json.dump(summary, open(sys.argv[2], "w"), indent=2)
print(f"gpu-check: {len(spans)} trials, at most {most} at once; " + ", ".join(f"{t}: {v}" for t, v in ids.items()))
EOF

# 3. export and separate
log "3/5 runner export --best, separate, runner score"
run export runner export --best --experiment share --results "$out/results" -o "$out/export"
run mixtures runner mixtures --dataset cifar10 --data-dir "$data_dir" --count 100 -o "$out/pairs"
run separate separate "$out/pairs/mixtures" -o "$out/separated-share" --model "$out/export/share-unet.onnx"
run score runner score --pairs "$out/pairs" --outputs "$out/separated-share" --json "$out/separate.json"
log "separate on 100 test mixtures: $(cat "$out/separate.json" | tr -d '\n ')"

# 4. the CUDA rows of the throughput benchmark
if [ "$gpus" -gt 0 ]; then
    log "4/5 benchmarks/train_throughput.py --devices cuda --compile"
    run throughput "$python" benchmarks/train_throughput.py --devices cuda --compile --data-dir "$data_dir" \
        --json "$out/throughput.json"
else
    skip throughput "no GPU: the CUDA rows need one (the CPU rows are in the README's Performance section)"
fi

# 5. the best GPU configuration for N minutes, scored through separate
config=best-gpu
runner spaces | grep -q "^best-gpu " || config=best-cpu
if [ "$gpus" -gt 0 ]; then
    log "5/5 runner train --config $config --minutes $minutes"
    run train runner train --config "$config" --minutes "$minutes" --data-dir "$data_dir" --results "$out/results" --name best
    run export-best runner export --best --experiment best --results "$out/results" -o "$out/export"
    run test-mixtures runner mixtures --dataset cifar10 --data-dir "$data_dir" --count 500 -o "$out/test-pairs"
    run separate-best separate "$out/test-pairs/mixtures" -o "$out/separated-best" --model "$out/export/best-unet.onnx"
    run score-best runner score --pairs "$out/test-pairs" --outputs "$out/separated-best" --json "$out/best.json"
    "$python" -c "import json, sys; s = json.load(open(sys.argv[1])); s['config'] = sys.argv[2]; s['minutes'] = float(sys.argv[3]); json.dump(s, open(sys.argv[1], 'w'), indent=2)" \
        "$out/best.json" "$config" "$minutes"
else
    skip best "no GPU: 10 CPU minutes of best-cpu.yaml are measured in the README's Quality section"
fi

"$python" - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = [f"# GPU check, {out.name}", "", f"machine: `{json.dumps(json.loads((out / 'machine.json').read_text()))}`", "",
         "| step | result |", "| --- | --- |"]
for step in ("tests", "share", "separate", "throughput", "best"):
    value = json.loads((out / f"{step}.json").read_text())
    lines.append(f"| {step} | `{json.dumps(value, separators=(', ', ': '))[:400]}` |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print(f"gpu-check: wrote {out / 'summary.md'}")
EOF
