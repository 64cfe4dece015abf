"""What a trial of `runner tune` costs beyond its training: its start, and its checkpoints.

    python benchmarks/trial_costs.py [--json PATH] [--parts startup,checkpoints] [--keep DIR]

startup: `runner tune` runs --startup-trials (8) trials of one short epoch, once on the
CIFAR-10 subset and once on a folder of --folder-images (2,000) PNGs that the script
writes (CIFAR-10 test images enlarged to 128 x 128, so each is decoded and cut to 64 x 64
as a user's photos are). Every trial reports `startup_seconds`: from the trainable's
first line to its first training step (imports, data, model). The table gives their
median and maximum, and each search's wall time.

checkpoints: `runner tune` runs --checkpoint-trials (16) trials of a U-Net (widths 32,
64, 128) for --epochs (6) short epochs each, every trial to its end (the fifo
scheduler), so checkpoints weigh as they do on a GPU, where epochs are short. Per
epoch, the seconds a trial spends outside its training and validation (Ray's
`time_this_iter_s` minus `train_seconds` and `eval_seconds`: building, writing and
persisting its checkpoint, and Ray's own work per result), and the disk the experiment
holds when it ends.

Both parts run the runner installed beside this Python, so the same script measures two
versions of the runner (--label names the one measured).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import base_parser, data_dir_or_exit, log, machine, markdown_table, write_json

BATCH = 32


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--parts", default="startup,checkpoints", help="which parts to run, comma-separated")
    parser.add_argument("--label", default="", help="what is measured, e.g. a commit (stored with the figures)")
    parser.add_argument("--startup-trials", type=int, default=8, help="trials of each start-up search (default 8)")
    parser.add_argument("--folder-images", type=int, default=2000, help="PNGs in the folder dataset (default 2000)")
    parser.add_argument("--checkpoint-trials", type=int, default=16, help="trials of the checkpoint search (default 16)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each checkpoint trial (default 6)")
    parser.add_argument("--keep", type=Path, help="keep the spaces, experiments and logs in this folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cifar = data_dir_or_exit(args, "trial_costs")
    parts = args.parts.split(",")
    report = {"machine": machine(), "label": args.label, "settings": {
        key: getattr(args, key) for key in ("startup_trials", "folder_images", "checkpoint_trials", "epochs")}}
    with tempfile.TemporaryDirectory(prefix="trial-costs-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if "startup" in parts:
            folder = write_folder(cifar, work / "folder", args.folder_images)
            report["startup"] = {
                "cifar10": startup(work, "cifar10", cifar, args.startup_trials),
                "folder": startup(work, "folder", folder, args.startup_trials),
            }
        if "checkpoints" in parts:
            report["checkpoints"] = checkpoints(work, cifar, args.checkpoint_trials, args.epochs)
    print_tables(report)
    if args.json:
        write_json(args.json, report)
        log(f"JSON: {args.json}")
    return 0


def write_folder(cifar: Path, folder: Path, count: int) -> Path:
    """`count` PNGs of 128 x 128: CIFAR-10 test images enlarged (photos, not noise, so PNG decodes as usual)."""
    from PIL import Image

    from runner.data.sources import load_images

    pixels = load_images("cifar10", "test", cifar).pixels
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.fromarray(pixels[index % len(pixels)].transpose(1, 2, 0)).resize((128, 128), Image.BICUBIC)
        image.save(folder / f"{index:05d}.png")
    return folder


def startup(work: Path, dataset: str, data_dir: Path, trials: int) -> dict:
    space = {
        "tune": {"samples": trials, "max_epochs": 1, "scheduler": "fifo"},
        "data": {"dataset": dataset, "val_images": 200, "val_pairs": 200},
        "model": {"family": "unet", "widths": [8, 16], "output": "consistent"},
        "train": {"lr": 1e-3, "batch_size": BATCH, "epoch_pairs": 4 * BATCH},
    }
    wall, rows = run_tune(work, f"startup-{dataset}", space, data_dir)
    seconds = [trial[0]["startup_seconds"] for trial in rows.values()]
    return {"wall_s": wall, "startup_s": seconds, "median_s": statistics.median(seconds), "max_s": max(seconds)}


def checkpoints(work: Path, cifar: Path, trials: int, epochs: int) -> dict:
    space = {
        "tune": {"samples": trials, "max_epochs": epochs, "scheduler": "fifo"},
        "data": {"dataset": "cifar10", "val_images": 200, "val_pairs": 200},
        "model": {"family": "unet", "widths": [32, 64, 128], "output": "consistent"},
        "train": {"lr": {"loguniform": [3e-4, 3e-3]}, "batch_size": BATCH, "epoch_pairs": 4 * BATCH, "ema": 0.99},
    }
    name = "checkpoints"
    wall, rows = run_tune(work, name, space, cifar)
    outside = [row["time_this_iter_s"] - row["train_seconds"] - row["eval_seconds"] for trial in rows.values() for row in trial]
    disk = sum(file.stat().st_size for file in (work / "results" / name).rglob("*") if file.is_file())
    kept = len(list((work / "results" / name).glob("trial_*/checkpoint_*")))
    return {"wall_s": wall, "epochs": len(outside), "outside_s_per_epoch": statistics.mean(outside),
            "outside_s_total": sum(outside), "disk_bytes": disk, "checkpoints_kept": kept, "trials": trials}


def run_tune(work: Path, name: str, space: dict, data_dir: Path) -> tuple[float, dict[str, list[dict]]]:
    """Run `runner tune` on `space` (as JSON, which YAML reads); (wall seconds, each trial's result rows)."""
    space_file = work / f"{name}.yaml"
    space_file.write_text(json.dumps(space, indent=2) + "\n")
    runner = Path(sys.executable).parent / "runner"
    command = [str(runner), "tune", "--space", str(space_file), "--data-dir", str(data_dir),
               "--results", str(work / "results"), "--name", name, "--cpus-per-trial", "1"]
    log(f"{name}: runner tune, {space['tune']['samples']} trials ...")
    start = time.perf_counter()
    with open(work / f"{name}.log", "w") as output:
        completed = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"})
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"runner tune exited {completed.returncode}:\n{(work / f'{name}.log').read_text()[-3000:]}")
    rows = {}
    for results in sorted((work / "results" / name).glob("trial_*/result.json")):
        rows[results.parent.name] = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return wall, rows


def print_tables(report: dict) -> None:
    label = f" ({report['label']})" if report["label"] else ""
    cpus = report["machine"]["cpu_count"]
    if "startup" in report:
        print(f"### Trial start to first step{label}: {report['settings']['startup_trials']} trials, 2 at a time, "
              f"{cpus} CPUs\n")
        rows = [[source, r["median_s"], r["max_s"], r["wall_s"]] for source, r in report["startup"].items()]
        print(markdown_table(["data", "median start (s)", "max start (s)", "search wall (s)"], rows) + "\n")
    if "checkpoints" in report:
        r = report["checkpoints"]
        print(f"### Checkpoints{label}: {r['trials']} trials x {report['settings']['epochs']} epochs, {cpus} CPUs\n")
        print(markdown_table(
            ["s per epoch outside training", "s in all", "disk at the end (MB)", "checkpoints kept", "search wall (s)"],
            [[r["outside_s_per_epoch"], r["outside_s_total"], r["disk_bytes"] / 1e6, r["checkpoints_kept"], r["wall_s"]]]))


if __name__ == "__main__":
    sys.exit(main())
