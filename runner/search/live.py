"""A rich live view of a running search, fed by Ray Tune's callback hooks in the driver."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from runner.results import METRIC, family_of
from runner.search.outcomes import DIVERGED, ERRORED, FAILED

DONE = "done"


class LiveView(Callback):
    """One row per trial: family, state, epoch, validation PIT-PSNR, beside the Average baseline."""

    def __init__(self, samples: int):
        self.samples = samples
        self.rows: dict[str, dict[str, Any]] = {}
        self.baseline: float | None = None
        self.live: Live | None = None

    def setup(self, **info) -> None:
        self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=2, transient=False)
        self.live.start()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._update(trial, state="running")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.baseline = result.get("val_baseline_psnr", self.baseline)
        self._update(trial, state="running", epoch=result.get("epoch"), score=result.get(METRIC))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._update(trial, state=trial.last_result.get(FAILED, DONE))  # diverged or errored: it ended itself

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._update(trial, state="error")

    def on_experiment_end(self, trials, **info) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
            if not self.live.console.is_terminal:
                self.live.console.line()  # rich ends the view's last line on a terminal only; the summary follows

    def get_state(self) -> dict[str, Any]:
        """Saved with Ray Tune's experiment state, so a resumed search shows its earlier trials too."""
        return {"rows": self.rows, "baseline": self.baseline}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rows, self.baseline = state["rows"], state["baseline"]

    def _update(self, trial, **values) -> None:
        row = self.rows.setdefault(trial.trial_id, {"family": family_of(trial.config.get("trial", {})), "best": None})
        row.update({k: v for k, v in values.items() if v is not None})
        if values.get("score") is not None:
            row["best"] = max(row["best"] or float("-inf"), values["score"])
        if self.live is not None:
            self.live.update(self._table())

    def _table(self) -> Table:
        done = sum(row.get("state") in (DONE, DIVERGED, ERRORED) for row in self.rows.values())
        baseline = f", Average baseline {self.baseline:.2f} dB" if self.baseline is not None else ""
        table = Table(title=f"trials {done}/{self.samples} done{baseline}")
        for column in ("trial", "family", "state", "epoch", "val PIT-PSNR", "best"):
            table.add_column(column, justify="right" if column in ("epoch", "val PIT-PSNR", "best") else "left")
        for trial_id, row in self.rows.items():
            table.add_row(
                trial_id, row["family"], row.get("state", ""), str(row.get("epoch", "")),
                _db(row.get("score")), _db(row.get("best")),
            )
        return table


def _db(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else ""
