"""The Optuna searcher of a search that stops and continues: its study stays exact when the
driver dies between two of Ray Tune's snapshots.

Ray Tune snapshots its experiment state (trials and searcher) every few seconds, while the
Optuna study in `study.db` is written at once. After a SIGKILL the study can therefore be
ahead of the snapshot that `Tuner.restore` continues from; `ResumableOptunaSearch` settles
the difference.
"""

from __future__ import annotations

import warnings

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from runner.search.outcomes import FAILED

# Set by ResumableOptunaSearch on a trial it asks Optuna to run again: the number of the
# attempt the killed driver had asked for but never recorded.
RETRY_OF = "retry_of"
_FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that keeps its study exact across a driver killed between two snapshots.

    Two differences can arise. A trial the study started (Optuna's RUNNING) that the
    snapshot never recorded would stay RUNNING forever: before the next ask it is told
    FAIL and its parameters are queued again, so the next trial runs them (Optuna's own
    way to retry a stale trial, as in `RetryFailedTrialCallback`). A trial the study already
    finished that the snapshot still has running is re-run by Tune from its last checkpoint:
    its repeated results are not told again (Optuna refuses updates to a finished trial).

    Ray's OptunaSearch keeps its study and the Tune trial id -> Optuna trial map only in
    `_ot_study` and `_ot_trials`, with no public accessor, so this subclass reads those two.
    Everything it does to the study goes through Optuna's public Study API.
    """

    def suggest(self, trial_id: str):
        self._retry_unrecorded()
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if FAILED not in result and not self._already_told(trial_id):
            with warnings.catch_warnings():
                # A trial continued from a checkpoint older than its last epoch reports the epochs
                # after it again (the same numbers: each epoch is re-derived from the seed); Optuna
                # keeps the first report of a step and warns of the second.
                warnings.filterwarnings("ignore", "The reported value is ignored")
                super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._already_told(trial_id):
            return
        if result and FAILED in result:  # it diverged or errored by itself: Optuna's FAIL, as for Ray's errors
            super().on_trial_complete(trial_id, result=None, error=True)
        else:
            super().on_trial_complete(trial_id, result=result, error=error)

    def _retry_unrecorded(self) -> None:
        if self._ot_study is None:
            return
        recorded = {trial.number for trial in self._ot_trials.values()}
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in recorded:
                self._ot_study.tell(trial.number, state=TrialState.FAIL)
                self._ot_study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})

    def _already_told(self, trial_id: str) -> bool:
        asked = self._ot_trials.get(trial_id)
        if asked is None:
            return False
        finished = self._ot_study.get_trials(deepcopy=False, states=_FINISHED_STATES)
        return any(trial.number == asked.number for trial in finished)
