"""Ray glue for a search that stops and continues: what Ray Tune's saved experiment state
says about each trial, and an Optuna searcher whose study stays exact when the driver dies.

Ray Tune snapshots its experiment state (trials and searcher) every few seconds, while the
Optuna study in `study.db` is written at once. After a SIGKILL the study can therefore be
ahead of the snapshot that `Tuner.restore` continues from; `ResumableOptunaSearch` settles
the difference so the study still holds every trial exactly once.
"""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState
from ray.exceptions import RayTaskError
from ray.tune import ExperimentAnalysis, ResultGrid
from ray.tune.experiment import Trial
from ray.tune.search.optuna import OptunaSearch

from runner.errors import RunnerError, TrialDiverged
from runner.search.outcomes import DIVERGED, ERRORED, FINISHED, STOPPED_EARLY, UNFINISHED, TrialOutcome
from runner.results import METRIC, family_of

REASON_LENGTH = 200


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


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that keeps its study exact across a driver killed between two snapshots.

    Two differences can arise. A trial the study started (Optuna's RUNNING) that the
    snapshot never recorded would stay RUNNING forever while a new one was asked for in its
    place: before each ask it goes back to Optuna's queue (WAITING), so the ask takes it up,
    parameters and number included. A trial the study already finished that the snapshot
    still has running is re-run by Tune from its last checkpoint: its repeated results are
    not told again (Optuna refuses updates to a finished trial).
    """

    def suggest(self, trial_id: str):
        self._requeue_unrecorded()
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._already_told(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._already_told(trial_id):
            super().on_trial_complete(trial_id, result=result, error=error)

    def _requeue_unrecorded(self) -> None:
        if self._ot_study is None:
            return
        recorded = {trial.number for trial in self._ot_trials.values()}
        storage = self._ot_study._storage  # noqa: SLF001 - Optuna has no public setter for a trial's state
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in recorded:
                storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)  # noqa: SLF001

    def _already_told(self, trial_id: str) -> bool:
        asked = self._ot_trials.get(trial_id)
        if asked is None:
            return False
        finished = self._ot_study.get_trials(deepcopy=False, states=_FINISHED_STATES)
        return any(trial.number == asked.number for trial in finished)


_FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _outcome(trial: Trial, error: Exception | None, max_epochs: int) -> TrialOutcome:
    epochs = trial.last_result.get("epoch", 0)
    failed = trial.status == Trial.ERROR
    return TrialOutcome(
        trial=trial.storage.trial_dir_name,
        family=family_of(trial.config.get("trial", {})),
        status=_status(trial.status, error, epochs, max_epochs),
        epochs=epochs,
        best_score=trial.metric_analysis.get(METRIC, {}).get("max"),
        retries=trial.num_failures - failed,
        reason=_reason(error) if failed else "",
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

