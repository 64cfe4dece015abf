#!/usr/bin/env bash
# The GPU acceptance check, sized for a short GPU slot: about 8 minutes on one GPU with the
# defaults. Run it in an environment that already holds a CUDA build of torch and this
# project (`pip install -e ".[train,dev]"` after torch).
#
#   bash scripts/gpu-check.sh [--data-dir DIR] [--minutes N] [--budget-s S] [--with-suite]
#
# Steps, in order; each one's output goes to OUT/<step>.log (OUT: results/gpu-check-<time>/):
#   suite       the CPU test suite (about 20 minutes): only with --with-suite
#   gpu-tier    the GPU tests: pytest -m gpu tests/test_gpu.py
#   share       `runner tune`, 4 trials sharing one GPU (--gpus-per-trial 0.25): how many ran
#               at once, and the GPU ids and device each recorded
#   separate    `runner export --best` of that search, `separate` + `runner score` on 100 test mixtures
#   throughput  the CUDA rows of benchmarks/train_throughput.py (uint8 data on the GPU, bf16,
#               channels-last, torch.compile against eager)
#   best        `runner train --config best-gpu --minutes N` (default 3), exported, and scored on
#               500 test mixtures through `separate`
# The GPU steps share a budget of S seconds (default 480): each has its own time limit as
# well, no step runs past what is left, and a step that finds too little left is skipped.
# OUT/summary.json says of every step whether it ran, failed or was skipped, why, and its
# seconds; OUT/summary.md is the same as a table. Without a GPU the GPU-only steps are
# skipped (and say so), while `share` runs its 4 trials on CPUs at a smaller size and
# `separate` exports them, so the script itself is tried anywhere in about two minutes.
# A failed step does not stop the others (except the steps that need its output); the exit
# status is 1 when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

data_dir="${RUNNER_DATA_DIR:-../shared/datasets/cifar-10-batches-py}"
minutes=3
budget=480
with_suite=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) data_dir="$2"; shift 2 ;;
        --minutes) minutes="$2"; shift 2 ;;
        --budget-s) budget="$2"; shift 2 ;;
        --with-suite) with_suite=1; shift ;;
        *) echo "gpu-check: unknown argument $1; see the top of $0" >&2; exit 2 ;;
    esac
done
# The active environment; else the project's own .venv (scripts/setup.sh) when there is one.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
python="${PYTHON:-python}"
out="results/gpu-check-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
started=$SECONDS
log() { echo "gpu-check: $*" | tee -a "$out/steps.log" >&2; }
# record STEP STATUS REASON SECONDS: one line of OUT/steps.jsonl (the summary reads them)
record() {
    "$python" -c 'import json, sys; print(json.dumps({"step": sys.argv[1], "status": sys.argv[2], "reason": sys.argv[3], "seconds": int(sys.argv[4])}))' \
        "$1" "$2" "$3" "$4" >> "$out/steps.jsonl"
}
skip() { record "$1" skipped "$2" 0; log "$1 skipped: $2"; }
# step NAME LIMIT_S COMMAND...: runs the command (or a function of this script, exported) with its
# output in OUT/NAME.log, for at most LIMIT_S seconds and never past the budget (from budget_start)
budget_start=$SECONDS
step() {
    local name="$1" limit="$2" start=$SECONDS status=0 left; shift 2
    left=$((budget - (SECONDS - budget_start)))
    if [ "$name" != suite ] && [ "$left" -lt 30 ]; then
        skip "$name" "the ${budget} s budget was spent (${left} s left)"; return 1
    fi
    [ "$name" != suite ] && [ "$left" -lt "$limit" ] && limit=$left
    log "$name: $*"
    if declare -F "$1" > /dev/null; then
        timeout "$limit" bash -c "$1" > "$out/$name.log" 2>&1 || status=$?
    else
        timeout "$limit" "$@" > "$out/$name.log" 2>&1 || status=$?
    fi
    if [ "$status" = 0 ]; then
        record "$name" ran "" $((SECONDS - start))
    else
        local why="exit status $status"; [ "$status" = 124 ] && why="over its ${limit} s limit"
        record "$name" failed "$why; the end of $out/$name.log: $(tail -3 "$out/$name.log" | tr '\n' ' ' | cut -c1-300)" $((SECONDS - start))
        log "$name failed ($why); the end of $out/$name.log:"; tail -5 "$out/$name.log" >&2
    fi
    return "$status"
}

"$python" - "$out/machine.json" <<'EOF'
import json, sys, torch
facts = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "gpus": []}
if torch.cuda.is_available():
    facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
json.dump(facts, open(sys.argv[1], "w"), indent=2)
EOF
gpus=$("$python" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['gpus']))" "$out/machine.json")
log "torch sees $gpus GPU(s): $(tr -d '\n ' < "$out/machine.json")"
export out data_dir minutes python PATH
no_gpu="torch here sees no CUDA device"

if [ "$with_suite" = 1 ]; then
    step suite 3600 "$python" -m pytest -q -p no:cacheprovider --junitxml="$out/tests.xml"
    budget_start=$SECONDS  # the budget is the GPU steps'
else
    skip suite "the CPU suite takes about 20 minutes; pass --with-suite to run it"
fi

if [ "$gpus" -gt 0 ]; then
    step gpu-tier 150 "$python" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
else
    skip gpu-tier "$no_gpu (tests/test_gpu.py skips itself there too)"
fi

# Four tiny U-Net trials sharing one GPU; without one, on CPUs and smaller.
if [ "$gpus" -gt 0 ]; then
    size="max_epochs: 3, grace_period: 3"; pairs=2048; share_flags=(--cpus-per-trial 1 --gpus-per-trial 0.25)
else
    size="max_epochs: 1"; pairs=256; share_flags=(--cpus-per-trial 1)
fi
cat > "$out/share.yaml" <<EOF
# gpu-check: four tiny U-Net trials sharing one GPU (on CPUs, and smaller, without one)
tune: {samples: 4, $size}
data: {dataset: cifar10, val_images: 200, val_pairs: 200}
model: {family: unet, base_width: {choice: [16, 32]}, depth: 3, output: consistent}
train: {lr: {loguniform: [1.0e-3, 3.0e-3]}, batch_size: 64, epoch_pairs: $pairs}
EOF
if step share 120 runner tune --space "$out/share.yaml" --data-dir "$data_dir" --results "$out/results" \
        --name share "${share_flags[@]}"; then
    "$python" - "$out/results/share" "$out/share.json" <<'EOF'
import json, sys
from pathlib import Path
spans, ids = [], {}
for result in sorted(Path(sys.argv[1]).glob("*/result.json")):
    rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    spans.append((rows[0]["timestamp"] - rows[0]["time_total_s"], rows[-1]["timestamp"]))
    ids[result.parent.name] = {key: rows[-1].get(key) for key in ("gpu_ids", "device", "precision")}
events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
running = most = 0
for _, change in events:
    running += change
    most = max(most, running)
json.dump({"trials": len(spans), "most_at_once": most, "per_trial": ids}, open(sys.argv[2], "w"), indent=2)
print(f"gpu-check: {len(spans)} trials, at most {most} at once; " + ", ".join(f"{t}: {v}" for t, v in ids.items()))
EOF
    separate_steps() {
        runner export --best --experiment share --results "$out/results" -o "$out/export" &&
        runner mixtures --dataset cifar10 --data-dir "$data_dir" --count 100 -o "$out/pairs" &&
        separate "$out/pairs/mixtures" -o "$out/separated-share" --model "$out/export/share-unet.onnx" &&
        runner score --pairs "$out/pairs" --outputs "$out/separated-share" --json "$out/separate.json"
    }
    export -f separate_steps
    step separate 60 separate_steps
else
    skip separate "the share step did not finish, so there is no search to export"
fi

if [ "$gpus" -gt 0 ]; then
    step throughput 90 "$python" benchmarks/train_throughput.py --devices cuda --compile --epochs 4 \
        --data-dir "$data_dir" --json "$out/throughput.json"
else
    skip throughput "$no_gpu (the CPU rows are in the README's Performance section)"
fi

config=best-gpu
runner spaces | grep -q "^best-gpu " || config=best-cpu
if [ "$gpus" -gt 0 ]; then
    best_steps() {
        runner train --config "$config" --minutes "$minutes" --data-dir "$data_dir" --results "$out/results" --name best &&
        runner export --best --experiment best --results "$out/results" -o "$out/export" &&
        runner mixtures --dataset cifar10 --data-dir "$data_dir" --count 500 -o "$out/test-pairs" &&
        separate "$out/test-pairs/mixtures" -o "$out/separated-best" --model "$out/export/best-unet.onnx" &&
        runner score --pairs "$out/test-pairs" --outputs "$out/separated-best" --json "$out/best.json" &&
        "$python" -c "import json, sys; s = json.load(open(sys.argv[1])); s.update(config=sys.argv[2], minutes=float(sys.argv[3])); json.dump(s, open(sys.argv[1], 'w'), indent=2)" \
            "$out/best.json" "$config" "$minutes"
    }
    export config
    export -f best_steps
    left=$((budget - (SECONDS - budget_start)))
    if [ "$left" -lt $((minutes * 60 + 60)) ]; then
        skip best "only ${left} s of the ${budget} s budget left for --minutes ${minutes} and its scoring; give fewer --minutes or more --budget-s"
    else
        step best $((minutes * 60 + 90)) best_steps
    fi
else
    skip best "$no_gpu (10 CPU minutes of best-cpu.yaml are measured in the README's Quality section)"
fi

"$python" - "$out" $((SECONDS - started)) <<'EOF'
import json, sys
from pathlib import Path
out, seconds = Path(sys.argv[1]), int(sys.argv[2])
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
for entry in steps:  # each step's own figures, where it wrote some
    figures = out / f"{entry['step']}.json"
    if entry["status"] == "ran" and figures.is_file():
        entry["result"] = json.loads(figures.read_text())
summary = {"machine": json.loads((out / "machine.json").read_text()), "seconds": seconds, "steps": steps,
           "ran": [s["step"] for s in steps if s["status"] == "ran"],
           "skipped": [s["step"] for s in steps if s["status"] == "skipped"],
           "failed": [s["step"] for s in steps if s["status"] == "failed"]}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
lines = [f"# GPU check, {out.name}", "", f"machine: `{json.dumps(summary['machine'])}`, {seconds} s in all", "",
         "| step | status | seconds | why / result |", "| --- | --- | --- | --- |"]
for s in steps:
    detail = s["reason"] or json.dumps(s.get("result", ""), separators=(", ", ": "))[:400]
    lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | `{detail}` |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print(f"gpu-check: {seconds} s; ran {', '.join(summary['ran']) or 'nothing'}; "
      f"skipped {', '.join(summary['skipped']) or 'nothing'}; failed {', '.join(summary['failed']) or 'nothing'}; "
      f"wrote {out / 'summary.json'} and {out / 'summary.md'}")
sys.exit(1 if summary["failed"] else 0)
EOF
