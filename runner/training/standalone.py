"""`runner train`: one configuration, no search, on disk exactly like one trial of a search.

    results/<name>/experiment.json
    results/<name>/trial_0/result.json           one JSON line per epoch
    results/<name>/trial_0/events.out.tfevents.* the same numbers for TensorBoard
    results/<name>/trial_0/checkpoint_<epoch>/   the best and the latest are kept

so `runner export --best` and `runner report` treat it like any other experiment. A run
stopped by Ctrl-C, a kill or a reboot continues from its latest checkpoint with
`runner train --resume NAME` (`resume_one`): the clock counts the time already spent, and
result.json goes on from the checkpoint's epoch.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from runner.data.sampler import PairData, load_pair_data
from runner.errors import RunnerError
from runner.files import write_text_atomic
from runner.results import METRIC, SPACE_COPY, CheckpointInfo, find_checkpoints, write_experiment
from runner.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from runner.training.fit import fit

if TYPE_CHECKING:  # the config is a later stage: only its types are used here
    from runner.config import TrialConfig
    from runner.space import SearchSpace
    from runner.training.config import TrainConfig

TRIAL = "trial_0"


class TrialRecorder:
    """Writes what Ray Tune would for one trial: result lines, TensorBoard events and
    checkpoints (best + latest kept). `resume`: the checkpoint a resumed run goes on from."""

    def __init__(self, trial_dir: Path, checkpoints: list[CheckpointInfo] = (), resume: TrainingState | None = None):
        self.trial_dir = trial_dir
        best = max(checkpoints, key=lambda c: c.score, default=None)
        self.best: tuple[float, Path] | None = (best.score, best.path) if best else None
        trial_dir.mkdir(parents=True, exist_ok=True)
        self.events = tensorboard_writer(trial_dir, resume)

    def __call__(self, metrics: dict[str, Any], state: TrainingState) -> None:
        checkpoint = save_checkpoint(self.trial_dir / f"checkpoint_{metrics['epoch']:06d}", state)
        with open(self.trial_dir / "result.json", "a") as results:
            results.write(json.dumps(_result_line(metrics)) + "\n")
        log_scalars(self.events, metrics)
        if self.best is None or metrics[METRIC] > self.best[0]:
            self.best = (metrics[METRIC], checkpoint)
        # Every other one goes, also those a run killed between a save and this cleanup left behind.
        for stale in set(self.trial_dir.glob("checkpoint_*")) - {checkpoint, self.best[1]}:
            shutil.rmtree(stale, ignore_errors=True)


def tensorboard_writer(trial_dir: Path, resume: TrainingState | None = None):
    """An event file in the trial's folder, as Ray Tune's TBXLoggerCallback writes for each
    trial of a search, so `tensorboard --logdir results/NAME` shows `runner train` runs too.

    tensorboardX is the library Ray uses (it comes with ray[tune]). A resumed run hides
    from TensorBoard every step from the checkpoint's epoch on (a killed run may have
    logged them, or not the checkpoint's own) and logs that epoch again, as
    `_keep_results_up_to` does for result.json.
    """
    from tensorboardX import SummaryWriter

    # Every writer marks a session start at `purge_step`: TensorBoard takes a run's first
    # one as its start and each later one as a restart that hides the steps from there on.
    writer = SummaryWriter(str(trial_dir), purge_step=resume.epoch if resume else 0)
    if resume is not None:
        log_scalars(writer, resume.metrics)
    return writer


def log_scalars(writer, metrics: dict[str, Any]) -> None:
    """The epoch's numbers under Ray Tune's tags (ray/tune/val_pit_psnr, ...): one chart holds searches and runs."""
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"ray/tune/{key}", value, global_step=metrics["epoch"])
    writer.flush()  # on disk as each epoch ends, as result.json is: TensorBoard sees it then, a kill loses none


def train_one(config: TrialConfig, directory: Path, *, data_dir: str | None, space: SearchSpace) -> dict[str, Any]:
    """Train `config` (the constants of `space`, flags applied) into the experiment `directory`.

    The data is loaded before the experiment exists, and a run that fails (or is stopped)
    before its first checkpoint is removed: nothing is left to resume or export, and a left
    folder would be the latest experiment, in the way of `runner export --best`.
    """
    data = load_pair_data(config.data, data_dir)
    write_experiment(directory, {"kind": "train", "started": time.time(), "config_file": space.source,
                                 "overrides": list(space.overrides), "data_dir": data_dir, "config": config.to_dict()})
    try:
        (directory / SPACE_COPY).write_text(space.yaml_text())
        return _train(config, TrialRecorder(directory / TRIAL), data_dir=data_dir, data=data)
    except BaseException:
        if not find_checkpoints(directory):
            shutil.rmtree(directory, ignore_errors=True)
        raise


def resume_one(config: TrialConfig, directory: Path, *, data_dir: str | None) -> dict[str, Any]:
    """Continue the run in `directory` from its latest checkpoint (`config`: the one it was started with)."""
    checkpoints = find_checkpoints(directory)
    if not checkpoints:
        raise RunnerError(f"{directory.name} stopped before its first checkpoint; start it again with runner train")
    latest = max(checkpoints, key=lambda c: c.epoch)
    state = load_checkpoint(latest.path)
    _keep_results_up_to(directory / TRIAL / "result.json", state)
    return _train(config, TrialRecorder(directory / TRIAL, checkpoints, resume=state), data_dir=data_dir, resume=state)


def _keep_results_up_to(results: Path, state: TrainingState) -> None:
    """result.json as of the checkpoint: later lines go (their epochs run again), a missing last one comes back."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.is_file() else []
    rows = [row for row in rows if row["epoch"] <= state.epoch]
    if not rows or rows[-1]["epoch"] < state.epoch:  # killed between the checkpoint and its line
        rows.append(_result_line(state.metrics))
    write_text_atomic(results, "".join(json.dumps(row) + "\n" for row in rows))


def _result_line(metrics: dict[str, Any]) -> dict[str, Any]:
    return {**metrics, "training_iteration": metrics["epoch"], "timestamp": time.time()}


def _train(config: TrialConfig, recorder: TrialRecorder, *, data_dir: str | None,
           resume: TrainingState | None = None, data: PairData | None = None) -> dict[str, Any]:
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task(f"training {config.model.family} ({budget(config.train)})", total=1.0, status="")

        def show(metrics: dict[str, Any], elapsed_s: float) -> None:
            progress.update(task, completed=done(config.train, metrics["epoch"], elapsed_s), status=(
                f"epoch {metrics['epoch']}  val PIT-PSNR {metrics[METRIC]:.2f} dB "
                f"(Average {metrics['val_baseline_psnr']:.2f} dB)"))

        def report(metrics: dict[str, Any], state: TrainingState) -> None:
            recorder(metrics, state)
            show(metrics, state.elapsed_s)

        if resume is not None:
            show(resume.metrics, resume.elapsed_s)  # the bar starts where the run stopped
        try:
            return fit(config, report, data_dir=data_dir, resume=resume, data=data)
        finally:
            recorder.events.close()


def budget(train: TrainConfig) -> str:
    """What ends the run: epochs, the clock, or whichever comes first."""
    parts = ([f"{train.epochs} epochs"] if train.epochs else []) + ([f"{train.minutes:g} min"] if train.minutes else [])
    return " or ".join(parts)


def done(train: TrainConfig, epoch: int, elapsed_s: float) -> float:
    """The fraction of the budget spent: by epochs or by the clock, whichever is further (as fit's schedule counts)."""
    by_epochs = epoch / train.epochs if train.epochs else 0.0
    by_clock = elapsed_s / (train.minutes * 60) if train.minutes else 0.0
    return min(1.0, max(by_epochs, by_clock))
