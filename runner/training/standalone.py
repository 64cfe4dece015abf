"""`runner train`: one configuration, no search, on disk exactly like one trial of a search.

    results/<name>/experiment.json
    results/<name>/trial_0/result.json           one JSON line per epoch
    results/<name>/trial_0/checkpoint_<epoch>/   the best and the latest are kept

so `runner export --best` and `runner report` treat it like any other experiment.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from runner.training.checkpoint import save_checkpoint
from runner.results import METRIC, SPACE_COPY, write_experiment
from runner.training.fit import fit

if TYPE_CHECKING:  # the config is a later stage: only its type is used here
    from runner.config import TrialConfig

TRIAL = "trial_0"


class TrialRecorder:
    """Writes what Ray Tune would for one trial: result lines and checkpoints (best + latest kept)."""

    def __init__(self, trial_dir: Path):
        self.trial_dir = trial_dir
        self.best: tuple[float, Path] | None = None
        self.latest: Path | None = None
        trial_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any]) -> None:
        checkpoint = save_checkpoint(self.trial_dir / f"checkpoint_{metrics['epoch']:06d}", state)
        with open(self.trial_dir / "result.json", "a") as results:
            results.write(json.dumps({**metrics, "training_iteration": metrics["epoch"], "timestamp": time.time()}) + "\n")
        if self.best is None or metrics[METRIC] > self.best[0]:
            self.best = (metrics[METRIC], checkpoint)
        for stale in {self.latest} - {checkpoint, self.best[1], None}:
            shutil.rmtree(stale, ignore_errors=True)
        self.latest = checkpoint


def train_one(config: TrialConfig, directory: Path, *, data_dir: str | None, source: str) -> dict[str, Any]:
    write_experiment(directory, {"kind": "train", "started": time.time(), "config_file": source,
                                 "data_dir": data_dir, "config": config.to_dict()})
    shutil.copyfile(source, directory / SPACE_COPY)
    recorder = TrialRecorder(directory / TRIAL)
    console = Console(stderr=True)
    budget = f"{config.train.minutes:g} min" if config.train.minutes else f"{config.train.epochs} epochs"
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task(f"training {config.model.family} ({budget})", total=config.train.epochs, status="")

        def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
            recorder(metrics, state)
            progress.update(task, completed=metrics["epoch"], status=(
                f"epoch {metrics['epoch']}  val PIT-PSNR {metrics[METRIC]:.2f} dB "
                f"(Average {metrics['val_baseline_psnr']:.2f} dB)"))

        return fit(config, report, data_dir=data_dir)
