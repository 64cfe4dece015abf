"""The results directory: experiments, their trials and checkpoints on disk, best-trial lookup.

    results/<experiment>/experiment.json      what ran: kind, space, settings (written by the runner)
    results/<experiment>/study.db             the Optuna study (tune only)
    results/<experiment>/<trial>/result.json  one JSON line per epoch (Ray Tune's format)
    results/<experiment>/<trial>/checkpoint_*/{model.pt, metrics.json}

Ray Tune writes the trial directories of `runner tune`; `runner train` writes the same
layout itself, so everything downstream (export, report) reads both alike. Lookups read
`metrics.json` only, so ranking checkpoints needs no torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import RunnerError

EXPERIMENT_FILE = "experiment.json"
STUDY_FILE = "study.db"
METRIC = "val_pit_psnr"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path          # the checkpoint directory
    trial: str          # the trial directory's name
    family: str
    epoch: int
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def score(self) -> float:
        return self.metrics.get(METRIC, float("-inf"))


def experiment_dir(results: str | Path, name: str) -> Path:
    return Path(results).expanduser().resolve() / name


def write_experiment(directory: Path, description: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / EXPERIMENT_FILE, description)


def read_experiment(directory: Path) -> dict[str, Any]:
    file = directory / EXPERIMENT_FILE
    if not file.is_file():
        raise RunnerError(f"{directory} is not an experiment of this runner (no {EXPERIMENT_FILE})")
    return json.loads(file.read_text())


def find_experiment(results: str | Path, name: str | None) -> Path:
    """The named experiment, or the most recently started one."""
    results = Path(results).expanduser().resolve()
    if name is not None:
        directory = results / name
        if not (directory / EXPERIMENT_FILE).is_file():
            known = ", ".join(list_experiments(results)) or "none"
            raise RunnerError(f"no experiment '{name}' in {results}; experiments there: {known}")
        return directory
    experiments = list_experiments(results)
    if not experiments:
        raise RunnerError(f"no experiments in {results}; run `runner tune --space FILE` first or pass --results DIR")
    return max((results / e for e in experiments), key=lambda d: (d / EXPERIMENT_FILE).stat().st_mtime)


def list_experiments(results: Path) -> list[str]:
    if not results.is_dir():
        return []
    return sorted(p.parent.name for p in results.glob(f"*/{EXPERIMENT_FILE}"))


def find_checkpoints(directory: Path) -> list[CheckpointInfo]:
    checkpoints = []
    for metrics_file in sorted(directory.glob("*/checkpoint_*/metrics.json")):
        try:
            summary = json.loads(metrics_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a checkpoint being written or damaged; the others still count
        checkpoints.append(
            CheckpointInfo(
                path=metrics_file.parent,
                trial=metrics_file.parent.parent.name,
                family=summary.get("family", "?"),
                epoch=summary.get("epoch", 0),
                metrics=summary.get("metrics", {}),
                config=summary.get("config", {}),
            )
        )
    return checkpoints


def best_checkpoint(directory: Path) -> CheckpointInfo:
    checkpoints = find_checkpoints(directory)
    if not checkpoints:
        raise RunnerError(
            f"experiment {directory.name} has no finished trial with a checkpoint; "
            f"let `runner tune` finish or resume it with `runner tune --resume {directory.name}`"
        )
    return max(checkpoints, key=lambda c: c.score)


def best_per_family(directory: Path) -> dict[str, CheckpointInfo]:
    """The best checkpoint of each `family_label`: what reports set against the Average baseline."""
    best: dict[str, CheckpointInfo] = {}
    for checkpoint in find_checkpoints(directory):
        label = family_label(checkpoint.config, checkpoint.family)
        if label not in best or checkpoint.score > best[label].score:
            best[label] = checkpoint
    return dict(sorted(best.items()))


def family_label(config: dict[str, Any], family: str | None = None) -> str:
    """The model family, with a fixed-order loss named: that variant exists only to show its
    collapse, so reports show it beside the permutation-invariant one instead of ranking them."""
    family = family or config.get("model", {}).get("family", "?")
    return f"{family}, fixed-order" if config.get("train", {}).get("loss") == "fixed" else family


def stored_data_dir(directory: Path) -> str | None:
    """The --data-dir an experiment was started with (None: the default search places)."""
    stored = read_experiment(directory)
    return stored.get("data_dir") or stored.get("request", {}).get("data_dir")


def trial_histories(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's per-epoch results, from each trial's result.json (JSON lines)."""
    histories = {}
    for file in sorted(directory.glob("*/result.json")):
        rows = []
        for line in file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        histories[file.parent.name] = rows
    return histories


def write_json_atomic(target: Path, value: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(value, file, indent=2)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
