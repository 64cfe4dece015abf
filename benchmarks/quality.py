"""Separation quality on real CIFAR-10 test pairs, every entry trained for the same wall-clock budget.

    python benchmarks/quality.py                                   # 1.5 min per entry: ~10 min on 2 cores
    python benchmarks/quality.py --minutes 10 --json quality.json  # the figures benchmarks/NOTES-quality.md quotes

Each entry is a constants-only YAML under search_spaces/ (the same file `runner train
--config` runs), trained by `runner.training.fit.fit` on the shared CIFAR-10 subset for
`--minutes` of wall-clock time on this machine, one after the other. Its best validation
checkpoint (the one `runner export --best` would ship) is scored on the same fixed pairs of
the 500 shared test images (`runner.data.pairs.TEST_PAIRS_SEED`) with PIT-PSNR and
PIT-SSIM, beside the Average baseline (both outputs = the mixture) on those pairs. Prints
a markdown table that marks the entry with the highest test PIT-PSNR, writes JSON with
`--json`, and draws test separations of the best trained entry.

Budgets are wall-clock, so figures compare only within one run on one otherwise idle
machine: another process on the same cores takes steps away from every entry.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone without installing

from benchmarks.common import (  # noqa: E402
    REPO, base_parser, data_dir_or_exit, log, machine, markdown_table, optional_path, publish,
)

SPACES = REPO / "search_spaces"
GRID_PAIRS = 6


@dataclass(frozen=True)
class Entry:
    key: str                 # JSON key
    label: str               # table row
    config: str | None       # YAML under search_spaces/; None: the Average baseline (nothing to train)


# Labels say what each entry is, not how it ranks: the ranking is this run's to measure
# (`markdown` marks the row with the highest test PIT-PSNR).
ENTRIES = (
    Entry("average", "Average baseline (both outputs = mixture)", None),
    Entry("original", "original method (fixed-order loss)", "original.yaml"),
    Entry("plain_unet", "plain U-Net, PIT loss (the issue's reference)", "plain-unet.yaml"),
    Entry("best_ae", "AE with best-cpu's levers", "best-ae.yaml"),
    Entry("best_vae", "VAE with best-cpu's levers", "best-vae.yaml"),
    Entry("best_cpu", "best-cpu U-Net", "best-cpu.yaml"),
)
BEST_MARK = " = best of this run"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = data_dir_or_exit(args, "quality.py")

    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from runner.config import TrialConfig
    from runner.data.pairs import TEST_PAIRS_SEED, fixed_pairs
    from runner.data.sampler import load_pair_data, load_test_images
    from runner.space import load_space, resolve_constants

    console = Console(stderr=True)
    entries = [entry for entry in ENTRIES if not args.only or entry.key in args.only or entry.config is None]
    configs: dict[str, TrialConfig] = {}
    for entry in entries:
        if entry.config:
            configs[entry.key] = prepare(resolve_constants(load_space(SPACES / entry.config)), args)

    reference = next(iter(configs.values()), prepare(TrialConfig(), args)).data
    for key, config in configs.items():   # one set of images and validation pairs serves every entry
        if shared_data(config.data) != shared_data(reference):
            raise SystemExit(f"quality.py: {key} reads other data ({config.data}) than the others ({reference})")
    data = load_pair_data(reference, args.data_dir)
    test_images = load_test_images(reference, args.data_dir)
    pairs = torch.from_numpy(fixed_pairs(len(test_images), args.test_pairs, TEST_PAIRS_SEED))
    baseline = score_baseline(test_images, pairs)

    results: dict[str, dict[str, Any]] = {}
    states: dict[str, Any] = {}             # key -> the TrainingState of its best validation epoch
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console) as progress:
        overall = progress.add_task("quality benchmark", total=len(configs), status=f"{args.minutes:g} min per entry")
        for entry in entries:
            if entry.config is None:
                results[entry.key] = row(entry, None, baseline, baseline, {})
                continue
            config = configs[entry.key]
            task = progress.add_task(f"  {entry.label}", total=config.train.minutes * 60, status="starting")
            state, metrics, seconds = train_entry(config, data, progress, task)
            scores = score_state(state, test_images, pairs)
            states[entry.key] = state
            results[entry.key] = row(entry, config, scores, baseline, {**metrics, "train_seconds": seconds})
            progress.update(task, completed=config.train.minutes * 60,
                            status=f"test PIT-PSNR {scores['pit_psnr']:.2f} dB (Average {baseline['pit_psnr']:.2f})")
            progress.advance(overall)

    best = max(states, key=lambda key: results[key]["pit_psnr"]) if states else None
    report = {
        "benchmark": "quality", "dataset": "cifar10 (shared subset)", "data_dir": str(args.data_dir),
        "minutes_per_entry": args.minutes, "threads": torch.get_num_threads(),
        "test_pairs": len(pairs), "test_pairs_seed": TEST_PAIRS_SEED, "smoke": args.smoke,
        "machine": {**machine(), "torch": torch.__version__},
        "best": best, "order": list(results), "entries": results,
    }
    if best is not None and args.figure:
        report["figure"] = str(draw(states[best], results[best], args, report))
        log(f"separations of the best entry ({results[best]['label']}): {report['figure']}")
    publish(markdown(report), report, args.json)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.5, help="wall-clock training budget per entry (default 1.5)")
    parser.add_argument("--figure", type=optional_path, default=REPO / "results" / "quality-separations.png",
                        help="test separations of the best entry (default results/quality-separations.png; '' for none)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for every entry (default: torch's, all cores)")
    parser.add_argument("--test-pairs", type=int, default=500, help="fixed test pairs to score (default 500)")
    parser.add_argument("--only", nargs="+", metavar="KEY", choices=[e.key for e in ENTRIES if e.config],
                        help="train only these entries (the Average baseline is always shown)")
    parser.add_argument("--smoke", action="store_true",
                        help="a check that the benchmark runs, not a measurement: 100 validation and test pairs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.test_pairs = min(args.test_pairs, 100)
    return args


def prepare(config, args):
    """The entry's own configuration, on the benchmark's shared budget, threads and validation pairs."""
    config.train.minutes = args.minutes
    config.train.epochs = None              # the clock alone ends every entry, as `runner train --minutes` does
    config.train.threads = args.threads
    config.data.val_images, config.data.val_pairs = (100, 100) if args.smoke else (500, 500)
    return config


def shared_data(data) -> tuple:
    """What `load_pair_data` depends on (augmentation and shifts act later, in each entry's own sampler)."""
    return data.dataset, data.channels, data.image_size, data.per_class, data.val_images, data.val_pairs


def train_entry(config, data, progress, task) -> tuple[dict[str, Any], dict[str, Any], float]:
    """`fit` on the shared data; keeps the best validation checkpoint, as `runner export --best` picks."""
    from runner.training.fit import fit

    kept: dict[str, Any] = {}
    start = time.monotonic()

    def report(metrics: dict[str, Any], state) -> None:
        if "metrics" not in kept or metrics["val_pit_psnr"] > kept["metrics"]["val_pit_psnr"]:
            kept.update(metrics=metrics, state=state)
        progress.update(task, completed=min(time.monotonic() - start, config.train.minutes * 60),
                        status=f"epoch {metrics['epoch']}  val PIT-PSNR {metrics['val_pit_psnr']:.2f} dB")

    last = fit(config, report, data=data)   # fit moves the shared CPU data to its own device
    seconds = time.monotonic() - start
    return kept["state"], {"epochs": last["epoch"], "val_pit_psnr": kept["metrics"]["val_pit_psnr"],
                           "best_epoch": kept["metrics"]["epoch"]}, seconds


def score_state(state, images, pairs) -> dict[str, float]:
    from runner.training.checkpoint import rebuild_model

    model = rebuild_model(state)
    return score_batches(images, pairs, lambda mixture, a, b: model(mixture))


def score_baseline(images, pairs) -> dict[str, float]:
    return score_batches(images, pairs, lambda mixture, a, b: (mixture, mixture))


def score_batches(images, pairs, separate, batch: int = 250) -> dict[str, float]:
    import torch

    from runner.training.metrics import separation_scores
    from runner.data.sampler import make_mixtures

    collected: dict[str, list] = {"pit_psnr": [], "pit_ssim": []}
    with torch.no_grad():
        for start in range(0, len(pairs), batch):
            mixture, source_a, source_b = make_mixtures(images, pairs[start : start + batch])
            for key, values in separation_scores(*separate(mixture, source_a, source_b), source_a, source_b).items():
                collected[key].append(values.float())
    return {key: torch.cat(values).mean().item() for key, values in collected.items()}


def row(entry: Entry, config, scores, baseline, extra) -> dict[str, Any]:
    from runner.reports.report import describe

    return {
        "label": entry.label,
        "config": f"search_spaces/{entry.config}" if entry.config else None,
        "family": config.model.family if config else None,
        "describe": describe(config.to_dict()) if config else "returns the mixture twice",
        "pit_psnr": scores["pit_psnr"], "pit_ssim": scores["pit_ssim"],
        "baseline_psnr": baseline["pit_psnr"], "baseline_ssim": baseline["pit_ssim"],
        "gain_db": scores["pit_psnr"] - baseline["pit_psnr"],
        **extra,
    }


def markdown(report: dict[str, Any]) -> str:
    headers = ("entry", "config", "test PIT-PSNR (dB)", "test PIT-SSIM", "gain over Average (dB)", "epochs",
               "val PIT-PSNR (dB)")
    top = max(report["entries"], key=lambda key: report["entries"][key]["pit_psnr"])  # the Average baseline too
    rows = []
    for key, entry in report["entries"].items():
        rows.append((
            f"**{entry['label']}{BEST_MARK}**" if key == top else entry["label"], entry["config"] or "-",
            f"{entry['pit_psnr']:.2f}", f"{entry['pit_ssim']:.3f}", f"{entry['gain_db']:+.2f}",
            str(entry.get("epochs", "-")), f"{entry['val_pit_psnr']:.2f}" if "val_pit_psnr" in entry else "-",
        ))
    lines = [
        f"Separation quality on {report['test_pairs']} fixed CIFAR-10 test pairs; each entry trained "
        f"{report['minutes_per_entry']:g} min wall-clock on {report['threads']} torch threads "
        f"({report['machine']['processor']}).",
        "",
        markdown_table(headers, rows),
    ]
    if report["smoke"]:
        lines += ["", "(--smoke: a check that the benchmark runs, not a measurement)"]
    return "\n".join(lines)


def draw(state, result: dict[str, Any], args, report: dict[str, Any]) -> Path:
    from runner.training.checkpoint import save_checkpoint
    from runner.reports.figures import separation_grid
    from runner.reports.separations import separate_test_pairs

    args.figure.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = save_checkpoint(Path(scratch) / "best", state)
        separations = separate_test_pairs(checkpoint, str(args.data_dir), GRID_PAIRS)
    title = (f"{result['label']} ({result['config']}), {report['minutes_per_entry']:g} min on "
             f"{report['threads']} threads: test PIT-PSNR {result['pit_psnr']:.2f} dB, "
             f"Average baseline {result['baseline_psnr']:.2f} dB")
    return separation_grid(separations, title, args.figure)


if __name__ == "__main__":
    sys.exit(main())
