"""The end-of-search summary: every trial counted once, by how it ended."""

from __future__ import annotations

import io

from rich.console import Console

from runner.search.outcomes import (
    DIVERGED, ERRORED, FINISHED, STOPPED_EARLY, UNFINISHED, TrialOutcome, counts_line, is_finished, print_outcomes,
)


def outcome(name: str, status: str, reason: str = "") -> TrialOutcome:
    return TrialOutcome(trial=name, family="unet", status=status, epochs=1, best_score=None, reason=reason)


def test_a_search_is_finished_when_every_sample_started_and_ended():
    ended = [outcome("a", FINISHED), outcome("b", STOPPED_EARLY), outcome("c", DIVERGED, "nan"), outcome("d", ERRORED, "x")]

    assert is_finished(ended, samples=4)
    assert not is_finished(ended[:3], samples=4)                        # one never started
    assert not is_finished([*ended[:3], outcome("d", UNFINISHED)], samples=4)


def test_counts_name_each_way_a_trial_ended_once():
    outcomes = [outcome("a", FINISHED), outcome("b", FINISHED), outcome("c", DIVERGED, "nan"), outcome("d", UNFINISHED)]

    assert counts_line(outcomes) == "4 trials: 2 finished, 1 diverged, 1 unfinished"
    assert counts_line([]) == "0 trials: none started"


def test_each_failed_trial_gets_one_line_with_its_reason(tmp_path):
    stream = io.StringIO()
    outcomes = [outcome("trial_1", FINISHED), outcome("trial_2", DIVERGED, "loss became nan in epoch 1; lower train.lr")]

    print_outcomes(tmp_path / "exp", outcomes, Console(file=stream, width=200))

    lines = stream.getvalue().splitlines()
    assert "exp: 2 trials: 1 finished, 1 diverged" in lines[0]
    assert "trial_2 diverged: loss became nan in epoch 1; lower train.lr" in lines


def test_a_trial_that_fails_by_itself_says_how_and_why_in_its_last_result():
    from runner.errors import RunnerError, TrialDiverged
    from runner.search.outcomes import FAILED, REASON, failure_result

    diverged = failure_result(TrialDiverged("loss became nan in epoch 3; lower train.lr"), epoch=2)
    errored = failure_result(RunnerError("cifar10 has 100 training images, too few\nto hold out 500"), epoch=0)

    assert diverged == {"epoch": 2, FAILED: DIVERGED, REASON: "loss became nan in epoch 3; lower train.lr"}
    assert errored == {"epoch": 0, FAILED: ERRORED, REASON: "cifar10 has 100 training images, too few"}  # one line


def test_the_traceback_hint_only_where_ray_kept_a_traceback(tmp_path):
    stream = io.StringIO()
    (tmp_path / "exp" / "trial_2").mkdir(parents=True)
    outcomes = [outcome("trial_1", DIVERGED, "loss became nan"), outcome("trial_2", ERRORED, "KeyError: 'x'")]

    print_outcomes(tmp_path / "exp", outcomes[:1], Console(file=stream, width=200))
    assert "error.txt" not in stream.getvalue()          # a trial that ended itself left no traceback
    (tmp_path / "exp" / "trial_2" / "error.txt").write_text("Traceback ...")
    print_outcomes(tmp_path / "exp", outcomes, Console(file=stream, width=200))
    assert "error.txt" in stream.getvalue()
