"""How much the choice matters in a space: final scores of random trials per family, early-epoch ranks, seed noise.

    python benchmarks/space_spread.py --space compare-bench --trials 30 --json spread.json --figure spread.png

Before a search strategy is tuned on a space, this says whether the space can show what a
search is worth. It runs `runner tune` with random search and no early stopping
(`tune.sampler=random tune.scheduler=fifo`) for --trials trials, every one to the
space's `tune.max_epochs`, and reports:

- per family: how many trials, and the best, median and worst final validation PIT-PSNR,
  beside the Average baseline (a flat space has its better half within a few tenths of
  a dB, and a dozen random draws hold its best);
- per epoch: the rank correlation (Spearman) between the scores after that epoch and the
  final scores, which says where an early stop can trust the order;
- the trials below the Average baseline after their first epoch, and where they ended;
- the seed noise: the best trial's configuration trained again with --noise-seeds
  other training seeds (`train.seed`), and the spread of its final scores, its own
  seed's among them.

The figure draws each trial's final score per family and the baseline. KEY=VALUE
overrides change the space, as they do for `runner tune`.
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
from typing import Any

import numpy as np

from common import base_parser, data_dir_or_exit, log, machine, markdown_table, optional_path, write_json

METRIC, BASELINE = "val_pit_psnr", "val_baseline_psnr"


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--space", default="compare-bench", help="search space YAML or built-in name (default %(default)s)")
    parser.add_argument("--trials", type=int, default=30, help="random trials (default 30)")
    parser.add_argument("--noise-seeds", type=int, default=3, help="training seeds for the best configuration (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="the random sampler's seed (default 0)")
    parser.add_argument("--figure", type=optional_path, help="final scores per family as a PNG")
    parser.add_argument("--keep", type=Path, help="keep the experiments and logs in this folder; run again with the "
                                                  "same folder, the searches already there are read, not rerun")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override the space, as runner tune does")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = data_dir_or_exit(args, "space_spread.py")
    report: dict[str, Any] = {"machine": machine(), "settings": {
        "space": args.space, "trials": args.trials, "noise_seeds": args.noise_seeds, "seed": args.seed,
        "overrides": args.overrides}}
    with tempfile.TemporaryDirectory(prefix="space-spread-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        overrides = [*args.overrides, "tune.sampler=random", "tune.scheduler=fifo", "tune.points_to_evaluate=[]"]
        trials = run_search(work, "spread", [args.space, *overrides], args.trials, args.seed, data_dir)
        report["trials"] = trials
        report["baseline"] = trials[0]["baseline"]
        best = max(trials, key=lambda trial: trial["final"])
        report["best"] = best
        noise_space = work / "best.yaml"
        noise_space.write_text(json.dumps(noise_space_for(best["config"], args.noise_seeds, len(best["scores"])), indent=2) + "\n")
        report["noise"] = run_search(work, "noise", [str(noise_space)], args.noise_seeds, 0, data_dir)
    summarize(report)
    if args.figure:
        draw(report, args.figure)
        log(f"figure: {args.figure}")
    print(markdown(report))
    if args.json:
        write_json(args.json, report)
        log(f"JSON: {args.json}")
    return 0


def run_search(work: Path, name: str, space_and_overrides: list[str], samples: int, seed: int, data_dir: Path) -> list[dict]:
    """`runner tune` to the end; each trial's family, config, per-epoch scores and final score."""
    from runner.results import EXPERIMENT_FILE, epoch_rows, family_of, trial_histories

    space, *overrides = space_and_overrides
    command = [str(Path(sys.executable).parent / "runner"), "tune", "--space", space, "--samples", str(samples),
               "--seed", str(seed), "--name", name, "--results", str(work / "results"), "--data-dir", str(data_dir),
               *overrides]
    if (work / "results" / name / EXPERIMENT_FILE).is_file():
        log(f"{name}: reading the search kept in {work}")
    else:
        log(f"{name}: runner tune, {samples} trials ...")
        start = time.perf_counter()
        with open(work / f"{name}.log", "w") as output:
            done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"})
        if done.returncode != 0:
            raise RuntimeError(f"runner tune exited {done.returncode}:\n{(work / f'{name}.log').read_text()[-3000:]}")
        log(f"  {time.perf_counter() - start:.0f} s")
    trials = []
    for trial, rows in trial_histories(work / "results" / name).items():
        epochs = epoch_rows(rows)
        if not epochs:
            continue  # diverged before its first score
        config = rows[0]["config"]["trial"]
        trials.append({"trial": trial, "family": family_of(config), "config": config,
                       "scores": [row[METRIC] for row in epochs], "final": epochs[-1][METRIC],
                       "baseline": epochs[-1][BASELINE]})
    return trials


def noise_space_for(config: dict, seeds: int, epochs: int) -> dict:
    """A space of `config`'s constants with only train.seed drawn, each seed once, every trial to the end."""
    config = json.loads(json.dumps(config))
    points = [{"train.seed": seed} for seed in range(1, seeds + 1)]
    config["train"]["seed"] = {"choice": list(range(1, seeds + 1))}
    return {"tune": {"samples": seeds, "max_epochs": epochs, "scheduler": "fifo", "points_to_evaluate": points}, **config}


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (no ties among float scores; scipy is not a dependency)."""
    rank_x, rank_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def summarize(report: dict) -> None:
    trials, baseline = report["trials"], report["baseline"]
    families = sorted({trial["family"] for trial in trials})
    report["families"] = {}
    for family in families:
        finals = sorted(trial["final"] for trial in trials if trial["family"] == family)
        report["families"][family] = {"trials": len(finals), "best": finals[-1], "median": statistics.median(finals),
                                      "worst": finals[0]}
    complete = [trial for trial in trials if len(trial["scores"]) == max(len(t["scores"]) for t in trials)]
    finals = [trial["final"] for trial in complete]
    report["rank_correlation"] = {
        epoch + 1: spearman([trial["scores"][epoch] for trial in complete], finals)
        for epoch in range(len(complete[0]["scores"]) - 1)
    } if len(complete) > 2 else {}
    median = statistics.median(trial["final"] for trial in trials)
    below = [trial for trial in trials if trial["scores"][0] < baseline]
    report["below_baseline_after_epoch_1"] = {
        "trials": len(below), "ended_above_baseline": sum(trial["final"] > baseline for trial in below),
        "ended_above_median": sum(trial["final"] > median for trial in below),
        "best_final": max((trial["final"] for trial in below), default=None),
    }
    noise = [report["best"]["final"], *(trial["final"] for trial in report["noise"])]  # its own seed and the others
    report["seed_noise"] = {"finals": noise, "std": statistics.stdev(noise) if len(noise) > 1 else 0.0,
                            "range": max(noise) - min(noise)}
    report["within_noise_of_best"] = sum(trial["final"] >= report["best"]["final"] - report["seed_noise"]["range"]
                                         for trial in trials)


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"### Final scores of {len(report['trials'])} random trials of {s['space']} (sampler seed {s['seed']}), "
             f"Average baseline {report['baseline']:.2f} dB\n"]
    rows = [[family, r["trials"], r["best"], r["median"], r["worst"]] for family, r in report["families"].items()]
    lines.append(markdown_table(["family", "trials", "best (dB)", "median (dB)", "worst (dB)"], rows))
    if report["rank_correlation"]:
        lines.append("\n### Rank correlation of each epoch's scores with the final scores\n")
        lines.append(markdown_table(["epoch", *map(str, report["rank_correlation"])],
                                    [["Spearman", *report["rank_correlation"].values()]]))
    below = report["below_baseline_after_epoch_1"]
    lines.append(f"\nBelow the Average baseline after epoch 1: {below['trials']} trials; "
                 f"{below['ended_above_baseline']} ended above it and {below['ended_above_median']} above the median "
                 f"(best of them: {below['best_final'] if below['best_final'] is not None else 'none'}).")
    noise, best = report["seed_noise"], report["best"]
    lines.append(f"\nSeed noise of the best configuration ({best['trial']}, {best['family']}, {best['final']:.2f} dB): "
                 f"{len(noise['finals'])} seeds (its own first) gave {', '.join(f'{x:.2f}' for x in noise['finals'])} dB "
                 f"(std {noise['std']:.2f}, range {noise['range']:.2f}); {report['within_noise_of_best']} of "
                 f"{len(report['trials'])} trials end within that range of the best.")
    return "\n".join(lines)


def draw(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(report["families"])
    figure, axes = plt.subplots(figsize=(6, 4))
    for index, family in enumerate(families):
        finals = [trial["final"] for trial in report["trials"] if trial["family"] == family]
        axes.scatter(np.full(len(finals), index) + np.linspace(-0.15, 0.15, len(finals)), finals, s=18, label=None)
        axes.hlines(statistics.median(finals), index - 0.25, index + 0.25, color="black")
    axes.axhline(report["baseline"], color="grey", linestyle="--", label="Average baseline")
    axes.set_xticks(range(len(families)), families)
    axes.set_ylabel("final validation PIT-PSNR (dB)")
    axes.set_title(f"{len(report['trials'])} random trials of {report['settings']['space']} (line: median)")
    axes.legend(loc="best")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
