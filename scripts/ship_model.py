"""Make the model that ships inside the package from a finished `runner train --config shipped` run.

    python scripts/ship_model.py --experiment shipped --results R --data-dir DIR

Exports the experiment's best checkpoint in fp32, fp16 and int8 with `runner export`,
separates the 500 shared CIFAR-10 test pairs with each through `separate` and scores them
with `runner score` (the user's own commands, in that order), then ships the smallest
file whose PIT-PSNR is within `--tolerance-db` of fp32's: NAME.onnx in runner/inference/shipped/,
with its sidecar, which also records the test score. Prints the table it chose from (and
writes it to --json, when given).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "runner" / "inference" / "shipped"
PRECISIONS = ("fp32", "fp16", "int8")
TEST_PAIRS = 500


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="shipped", help="the `runner train` experiment (default: %(default)s)")
    parser.add_argument("--results", default="results", help="its results directory (default: %(default)s)")
    parser.add_argument("--data-dir", required=True, help="the folder holding cifar-10-batches-py/")
    parser.add_argument("--name", default="cifar10-unet", help="the shipped model's name (default: %(default)s)")
    parser.add_argument("--tolerance-db", type=float, default=0.05, help="PIT-PSNR a smaller file may lose against fp32 (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=TEST_PAIRS, help="test pairs to score on (default: %(default)s)")
    parser.add_argument("--into", type=Path, default=SHIPPED, help="where the shipped model goes (default: the package's folder)")
    parser.add_argument("--tta", action="store_true", help="export with `runner export --tta` (twice the compute)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ship-model-") as scratch:
        work = Path(scratch)
        runner("mixtures", "--dataset", "cifar10", "--data-dir", args.data_dir, "--count", str(args.pairs), "-o", work / "pairs")
        candidates = [measure(args, precision, work) for precision in PRECISIONS]
        fp32 = candidates[0]["pit_psnr"]
        fits = [c for c in candidates if c["pit_psnr"] >= fp32 - args.tolerance_db]
        chosen = min(fits, key=lambda c: c["bytes"])
        for c in candidates:
            mark = "*" if c is chosen else " "
            print(f"{mark} {c['precision']:5} {c['bytes'] / 1e6:6.1f} MB  {c['pit_psnr']:.3f} dB  "
                  f"({c['pit_psnr'] - fp32:+.3f} dB against fp32; Average baseline {c['baseline_psnr']:.2f} dB)")
        ship(chosen, args.name, args.into, args.pairs)
    print(f"shipped {chosen['precision']} as {args.into / args.name}.onnx")
    if args.json:
        args.json.write_text(json.dumps({"chosen": chosen["precision"], "candidates": candidates}, indent=2, default=str) + "\n")
    return 0


def measure(args, precision: str, work: Path) -> dict:
    """Export in one precision, separate the test pairs with `separate`, score them."""
    out = work / precision
    runner("export", "--experiment", args.experiment, "--results", args.results, "--data-dir", args.data_dir,
           "--precision", precision, "-o", out, *(["--tta"] if args.tta else []))
    (model,) = out.glob("*.onnx")
    run([str(Path(sys.executable).with_name("separate")), work / "pairs" / "mixtures", "-o", out / "separated", "--model", model])
    runner("score", "--pairs", work / "pairs", "--outputs", out / "separated", "--json", out / "score.json")
    score = json.loads((out / "score.json").read_text())
    keep = work / f"{precision}.onnx"
    shutil.copy(model, keep)
    shutil.copy(model.with_suffix(".json"), keep.with_suffix(".json"))
    return {"precision": precision, "path": keep, "bytes": model.stat().st_size,
            "pit_psnr": score["pit_psnr"], "baseline_psnr": score["baseline_psnr"]}


def ship(chosen: dict, name: str, into: Path, pairs: int) -> None:
    """Copy the chosen export in as NAME.onnx with its sidecar, adding the test score; one model ships."""
    from runner.inference.sidecar import write_sidecar

    into.mkdir(parents=True, exist_ok=True)
    for old in [*into.glob("*.onnx"), *into.glob("*.json")]:
        old.unlink()
    target = into / f"{name}.onnx"
    shutil.copy(chosen["path"], target)
    info = json.loads(chosen["path"].with_suffix(".json").read_text())
    # format, file name and sha256 are written anew; the checkpoint's path is this machine's, of no use to users
    info = {key: value for key, value in info.items() if key not in ("format", "onnx_file", "sha256", "checkpoint")}
    info["metrics"] = {**info.get("metrics", {}), "test_pit_psnr": chosen["pit_psnr"], "test_pairs": pairs}
    write_sidecar(target, info)  # its own sha256 again: the same bytes under a new name


def runner(*args) -> None:
    run([sys.executable, "-m", "runner.cli", *args])


def run(command: list) -> None:
    print("$", " ".join(map(str, command)), file=sys.stderr)
    subprocess.run(list(map(str, command)), check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
