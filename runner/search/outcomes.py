"""What became of every trial of a search, one row each: the summary a search ends with.

A trial ends one of five ways: it ran all its epochs (finished), ASHA stopped it after
fewer (stopped early), its loss became NaN or infinite (diverged), anything else went
wrong inside it (errored), or the driver stopped before it ended (unfinished, for
`runner tune --resume`). Errored and diverged trials carry their reason as one line.
`trial_outcomes` reads these from Ray Tune's saved experiment state.

A trial's own failure (`TrialDiverged`, or a `RunnerError` such as a config its data cannot
meet) would happen again on a retry: each epoch's randomness is derived from the seed. So
the trial ends itself with `failure_result` as its last result, which Ray Tune records as
a trial that ended, not one to retry (`--max-failures` is for a killed worker or a lost
node). Any other exception is Ray's errored trial, retried up to `--max-failures`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

from ray.exceptions import RayTaskError
from ray.tune import ExperimentAnalysis, ResultGrid
from ray.tune.experiment import Trial
from rich.console import Console
from rich.table import Table

from runner.errors import RunnerError, TrialDiverged
from runner.results import METRIC, family_of

FINISHED, STOPPED_EARLY, DIVERGED, ERRORED, UNFINISHED = "finished", "stopped early", "diverged", "errored", "unfinished"
STATUSES = (FINISHED, STOPPED_EARLY, DIVERGED, ERRORED, UNFINISHED)
ENDED = frozenset(STATUSES) - {UNFINISHED}
REASON_LENGTH = 200
FAILED, REASON = "failed", "reason"   # the keys of a trial's last result when it failed by itself


@dataclass(frozen=True)
class TrialOutcome:
    trial: str                  # the trial directory's name
    family: str
    status: str                 # one of STATUSES
    epochs: int                 # epochs reported
    best_score: float | None    # best validation PIT-PSNR of any epoch
    retries: int = 0            # failures Ray Tune retried from the last checkpoint (--max-failures)
    reason: str = ""            # why it diverged or errored, one line
    disk_bytes: int = 0         # what its folder holds: results, and its best and latest checkpoints


def is_finished(outcomes: list[TrialOutcome], samples: int) -> bool:
    """Every trial of the search was started and has ended, one way or another."""
    return len(outcomes) >= samples and all(outcome.status in ENDED for outcome in outcomes)


def counts_line(outcomes: list[TrialOutcome]) -> str:
    """e.g. '4 trials: 2 finished, 1 stopped early, 1 diverged'."""
    counts = Counter(outcome.status for outcome in outcomes)
    parts = [f"{counts[status]} {status}" for status in STATUSES if counts[status]]
    return f"{len(outcomes)} trial{'s' if len(outcomes) != 1 else ''}: {', '.join(parts) or 'none started'}"


def outcome_table(name: str, outcomes: list[TrialOutcome]) -> Table:
    disk = sum(outcome.disk_bytes for outcome in outcomes)
    table = Table(title=f"{name}: {counts_line(outcomes)}", caption=f"{disk / 1e6:,.0f} MB on disk" if outcomes else None)
    for column in ("trial", "family", "status", "epochs", "best PIT-PSNR", "retries", "disk"):
        table.add_column(column, justify="left" if column in ("trial", "family", "status") else "right")
    for outcome in outcomes:
        score = f"{outcome.best_score:.2f} dB" if outcome.best_score is not None else ""
        table.add_row(outcome.trial, outcome.family, outcome.status, str(outcome.epochs), score,
                      str(outcome.retries or ""), f"{outcome.disk_bytes / 1e6:,.1f} MB")
    return table


def print_outcomes(directory: Path, outcomes: list[TrialOutcome], console: Console) -> None:
    """The table, then one line per diverged or errored trial saying why."""
    console.print(outcome_table(directory.name, outcomes))
    failed = [outcome for outcome in outcomes if outcome.reason]
    for outcome in failed:
        console.print(f"{outcome.trial} {outcome.status}: {outcome.reason}", soft_wrap=True, highlight=False)
    if any((directory / outcome.trial / "error.txt").is_file() for outcome in failed):
        console.print(f"(the tracebacks are in {directory}/<trial>/error.txt)", soft_wrap=True, highlight=False)


def failure_result(error: Exception, epoch: int) -> dict[str, object]:
    """The last result of a trial that failed by itself after `epoch` epochs: how, and why in one line."""
    return {"epoch": epoch, FAILED: DIVERGED if isinstance(error, TrialDiverged) else ERRORED, REASON: _reason(error)}


# ---- what Ray Tune saved -------------------------------------------------------------


def has_saved_state(directory: Path) -> bool:
    """Whether Ray Tune saved an experiment state that `Tuner.restore` can continue."""
    try:
        ExperimentAnalysis(str(directory))
    except ValueError:  # stopped before Ray Tune's first snapshot
        return False
    return True


def trial_outcomes(directory: Path, max_epochs: int) -> list[TrialOutcome]:
    """Every trial Ray Tune knows of, in the order they were created; [] before the first snapshot."""
    if not has_saved_state(directory):
        return []
    analysis = ExperimentAnalysis(str(directory))
    return [_outcome(trial, result.error, max_epochs) for trial, result in zip(analysis.trials, ResultGrid(analysis))]


def _outcome(trial: Trial, error: Exception | None, max_epochs: int) -> TrialOutcome:
    last = trial.last_result
    epochs = last.get("epoch", 0)
    failed = trial.status == Trial.ERROR
    return TrialOutcome(
        trial=PurePath(trial.path).name,  # the trial directory (Trial.path: its storage path)
        family=family_of(trial.config.get("trial", {})),
        status=last.get(FAILED) or _status(trial.status, error, epochs, max_epochs),
        epochs=epochs,
        best_score=trial.metric_analysis.get(METRIC, {}).get("max"),
        retries=trial.num_failures - failed,
        reason=_reason(error) if failed else last.get(REASON, ""),
        disk_bytes=sum(file.stat().st_size for file in Path(trial.path).rglob("*") if file.is_file()),
    )


def _status(status: str, error: Exception | None, epochs: int, max_epochs: int) -> str:
    if status == Trial.TERMINATED:
        return FINISHED if epochs >= max_epochs else STOPPED_EARLY
    if status == Trial.ERROR:
        return DIVERGED if isinstance(_cause(error), TrialDiverged) else ERRORED
    return UNFINISHED


def _reason(error: Exception | None) -> str:
    """The error as one line: a runner error's own message, else its type and first line."""
    cause = _cause(error)
    if cause is None:
        return "failed without a saved error"
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if not isinstance(cause, (RunnerError, TrialDiverged)):
        text = f"{type(cause).__name__}: {text}"
    return text[:REASON_LENGTH]


def _cause(error: Exception | None) -> Exception | None:
    """The exception raised inside the trial, unwrapped from Ray's RayTaskError."""
    if isinstance(error, RayTaskError) and error.cause is not None:
        return error.cause
    return error
