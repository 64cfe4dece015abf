"""What a training budget buys: best validation PIT-PSNR against minutes of training, run by run.

    python benchmarks/budget_curves.py --results R NAME|FOLDER [...] [--figure PNG] [--json PATH]

Reads experiments that `runner train` made (nothing is trained here): each one's budget
(`--minutes` or epochs) and per-epoch results. The figure's clock is the sum of the epochs'
training steps (`train_seconds`), without the validation after each epoch or the pauses of
a run resumed in several sittings, so runs of different budgets, days and sittings share
one axis. Each curve is the best validation PIT-PSNR so far, the checkpoint an export would
take; the Average baseline (both outputs = the mixture) is drawn beside.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone without installing

from benchmarks.common import REPO, log, markdown_table, median, optional_path, publish  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from runner.errors import RunnerError
    from runner.reports.figures import budget_curves
    from runner.results import EXPERIMENT_FILE, find_experiment

    try:
        directories = [Path(name) if (Path(name) / EXPERIMENT_FILE).is_file() else find_experiment(args.results, name)
                       for name in args.experiments]
    except RunnerError as error:
        raise SystemExit(f"budget_curves.py: {error}") from None
    runs = [summarise(directory) for directory in directories]
    report: dict[str, Any] = {"results": str(args.results), "runs": runs}
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        curves = {run["label"]: (run["curve"]["minutes"], run["curve"]["best"]) for run in runs}
        baseline = runs[0]["average_baseline"]
        report["figure"] = str(budget_curves(curves, baseline, args.figure))
        log(f"figure: {report['figure']}")
    publish(markdown(report), report, args.json)
    return 0


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="+", metavar="NAME",
                        help="experiments made by `runner train`: names in --results, or their folders")
    parser.add_argument("--results", type=Path, default=REPO / "results", help="results directory (default results/)")
    parser.add_argument("--figure", type=optional_path, default=REPO / "results" / "budget-curves.png",
                        help="best-so-far curves (default results/budget-curves.png; '' for none)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here as JSON")
    return parser.parse_args(argv)


def summarise(directory: Path) -> dict[str, Any]:
    """One run's curve: after each epoch, the minutes of training so far and the best validation score yet."""
    from runner.results import epoch_rows, read_experiment, trial_histories

    histories = trial_histories(directory)
    if len(histories) != 1:
        raise SystemExit(f"budget_curves.py: {directory.name} has {len(histories)} trials; "
                         "pass experiments made by `runner train` (one trial each)")
    rows = epoch_rows(next(iter(histories.values())))
    if not rows:
        raise SystemExit(f"budget_curves.py: {directory.name} has no finished epoch yet")
    minutes, best, elapsed, best_so_far = [], [], 0.0, float("-inf")
    for row in rows:
        elapsed += row["train_seconds"] / 60
        best_so_far = max(best_so_far, row["val_pit_psnr"])
        minutes.append(round(elapsed, 3))
        best.append(best_so_far)
    config = read_experiment(directory)["config"]
    model, train = config["model"], config["train"]
    top = max(rows, key=lambda row: row["val_pit_psnr"])
    return {
        "name": directory.name,
        "label": f"{directory.name}: widths {model['widths']}, {rows[0]['params'] / 1e6:.1f}M parameters",
        "widths": model["widths"],
        "budget": budget(train),
        "params": rows[0]["params"],
        "macs": rows[0]["macs"],
        "epochs": rows[-1]["epoch"],
        "train_minutes": minutes[-1],
        "median_epoch_seconds": median([row["train_seconds"] for row in rows]),
        "best_val_pit_psnr": top["val_pit_psnr"],
        "best_epoch": top["epoch"],
        "average_baseline": rows[0]["val_baseline_psnr"],
        "curve": {"minutes": minutes, "best": best},
    }


def budget(train: dict[str, Any]) -> str:
    """The budget `runner train` was given: minutes, epochs, or both (whichever ends first)."""
    parts = [f"{train['minutes']:g} min" if train.get("minutes") else "",
             f"{train['epochs']} epochs" if train.get("epochs") else ""]
    return " or ".join(part for part in parts if part)


def markdown(report: dict[str, Any]) -> str:
    headers = ["run", "widths", "parameters", "budget", "epochs", "s/epoch", "training min",
               "best val PIT-PSNR (epoch)"]
    rows = [[run["name"], run["widths"], f"{run['params'] / 1e6:.1f}M", run["budget"], run["epochs"],
             f"{run['median_epoch_seconds']:.1f}", f"{run['train_minutes']:.0f}",
             f"{run['best_val_pit_psnr']:.2f} ({run['best_epoch']})"] for run in report["runs"]]
    baseline = report["runs"][0]["average_baseline"]
    return markdown_table(headers, rows) + f"\n\nAverage baseline on the validation pairs: {baseline:.2f} dB"


if __name__ == "__main__":
    sys.exit(main())
