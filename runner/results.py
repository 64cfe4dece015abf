"""The results directory: experiments, their trials and checkpoints on disk, best-trial lookup.

    results/<experiment>/experiment.json      what ran: kind, space, settings (written by the runner)
    results/<experiment>/space.yaml           the YAML it ran, copied (what --resume reads)
    results/<experiment>/study.db             the Optuna study (tune only)
    results/<experiment>/<trial>/result.json  one JSON line per epoch (Ray Tune's format)
    results/<experiment>/<trial>/checkpoint_*/{model.pt, metrics.json}

Ray Tune writes the trial directories of `runner tune`; `runner train` writes the same
layout itself, so everything downstream (export, report) reads both alike. Lookups read
`metrics.json` only, so ranking checkpoints needs no torch. Its metrics, like each line of
result.json, carry the model's cost beside its scores (`params`, `macs`,
`onnx_bytes_estimate`: runner/models/cost.py), which export's limits and the report read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.files import write_json_atomic

EXPERIMENT_FILE = "experiment.json"
STUDY_FILE = "study.db"
SPACE_COPY = "space.yaml"
METRIC = "val_pit_psnr"
# What `tune.objectives` may name: the metric each one is and which way is better.
OBJECTIVES = {"psnr": (METRIC, "max"), "macs": ("macs", "min"), "params": ("params", "min")}


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
                family=summary.get("family") or family_of(summary.get("config", {})),
                epoch=summary.get("epoch", 0),
                metrics=summary.get("metrics", {}),
                config=summary.get("config", {}),
            )
        )
    return checkpoints


def best_checkpoint(directory: Path) -> CheckpointInfo:
    checkpoints = find_checkpoints(directory)
    if not checkpoints:
        raise RunnerError(f"experiment {directory.name} has no checkpoint yet: let it run, or if it stopped, "
                          f"{continue_hint(directory)}")
    return max(checkpoints, key=lambda c: c.score)


def continue_hint(directory: Path) -> str:
    """How to go on with an experiment that stopped, as a command that works for its kind."""
    kind = read_experiment(directory).get("kind") if (directory / EXPERIMENT_FILE).is_file() else None
    if kind == "tune":
        return f"continue it with: runner tune --resume {directory.name} --results {directory.parent}"
    if kind == "train" and find_checkpoints(directory):
        return f"continue it with: runner train --resume {directory.name} --results {directory.parent}"
    return f"remove {directory} and start again"


def best_per_trial(directory: Path) -> list[CheckpointInfo]:
    """The best checkpoint of each trial, best-scoring first."""
    best: dict[str, CheckpointInfo] = {}
    for checkpoint in find_checkpoints(directory):
        if checkpoint.trial not in best or checkpoint.score > best[checkpoint.trial].score:
            best[checkpoint.trial] = checkpoint
    return sorted(best.values(), key=lambda checkpoint: checkpoint.score, reverse=True)


def family_of(config: dict[str, Any]) -> str:
    """The model family of a trial's configuration, as stored (a nested dict); '?' if it has none."""
    return config.get("model", {}).get("family", "?")


def stored_data_dir(directory: Path) -> str | None:
    """The --data-dir an experiment was started with (None: the default search places)."""
    stored = read_experiment(directory)
    return stored.get("data_dir") or stored.get("request", {}).get("data_dir")


def epoch_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's validated epochs in order, one row each: a resumed trial repeats the epochs
    after its last checkpoint, and the later row counts."""
    by_epoch = {row["epoch"]: row for row in rows if "val_pit_psnr" in row}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


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

