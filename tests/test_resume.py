"""`runner tune --resume`: a search whose driver was stopped (SIGINT) or killed (SIGKILL)
continues to every trial finished, its Optuna study holding each trial Tune ran exactly once.

The end-to-end tests run `runner tune` as a real process on a real local Ray, stop it
after the first checkpoint, and resume it. The searcher test plays the one race those
runs cannot aim at: a driver killed after the study moved on but before Ray Tune's next
snapshot.
"""

from __future__ import annotations

import json
import signal

import optuna
import pytest
from optuna.trial import TrialState

from tests.ray_processes import (
    assert_one_error_line, first_reported_checkpoint, run_runner, runner_here, start_runner, wait_for,
)
from tests.tiny_spaces import tiny_trial
from runner.results import METRIC, STUDY_FILE
from runner.search.searcher import RETRY_OF

SAMPLES, EPOCHS = 3, 3
SPACE = """\
# runner tune --space resume.yaml --samples 3 --max-epochs 3 (test-sized)
tune:
  grace_period: 3        # no early stopping: every trial runs all its epochs
""" + tiny_trial()


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_stopped_search_resumes_to_every_trial_finished_once(tmp_path, cifar_dir, processes, stop):
    space, results = tmp_path / "resume.yaml", tmp_path / "results"
    space.write_text(SPACE)
    experiment = results / "exp"
    driver = start_runner(processes, tmp_path, "tune", "--space", space, "--samples", SAMPLES, "--max-epochs", EPOCHS,
                          "--name", "exp", "--results", results, "--data-dir", cifar_dir)
    wait_for(lambda: first_reported_checkpoint(experiment) is not None, 600, "the first checkpoint", driver)
    checkpointed = first_reported_checkpoint(experiment).name

    driver.send_signal(stop)  # the driver only, as `kill` would; its Ray goes down with it
    code = driver.wait(timeout=180)

    if stop == signal.SIGINT:
        assert code == 130
        assert "runner tune --resume exp" in (tmp_path / "driver.err").read_text()
    else:
        assert code == -signal.SIGKILL
    resumed = run_runner(processes, "tune", "--resume", "exp", "--results", results)

    assert resumed.code == 0, resumed.err
    assert f"exp: {SAMPLES} trials: {SAMPLES} finished" in resumed.out
    assert_every_trial_finished_once(experiment)
    if stop == signal.SIGINT:
        # Ray Tune's last snapshot had this trial's checkpoint: it went on from there.
        assert restored_from_checkpoint(experiment / checkpointed / "result.json")


def test_resuming_a_finished_search_says_so_and_changes_nothing(finished_search, processes):
    before = snapshot(finished_search.results)

    again = run_runner(processes, "tune", "--resume", finished_search.name, "--results", finished_search.results)

    assert again.code == 0, again.err
    assert f"experiment {finished_search.name} has already finished; nothing to resume" in again.out
    assert f"{finished_search.name}: 2 trials: 2 finished" in again.out
    assert snapshot(finished_search.results) == before


def test_resume_refuses_flags_that_would_change_the_search(tmp_path, capsys):
    run = runner_here(capsys, "tune", "--resume", "exp", "--samples", 8, "--max-failures", 2, "--results", tmp_path)

    assert_one_error_line(run, "--resume continues a search as it was started; drop --samples, --max-failures")


def test_resuming_an_unknown_experiment_is_one_line(tmp_path, capsys):
    run = runner_here(capsys, "tune", "--resume", "nope", "--results", tmp_path)

    assert_one_error_line(run, "nope", "experiment.json")


# ---- the searcher across a driver killed between two snapshots -----------------------


def define_by_run(trial):
    trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)


def searcher(tmp_path):
    from runner.search.searcher import ResumableOptunaSearch

    return ResumableOptunaSearch(
        space=define_by_run, metric=METRIC, mode="max", sampler=optuna.samplers.TPESampler(seed=0),
        study_name="exp", storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / STUDY_FILE}"),
    )


def result(score: float, epoch: int) -> dict:
    return {METRIC: score, "training_iteration": epoch}


def test_study_stays_exact_when_the_driver_died_between_snapshots(tmp_path):
    first = searcher(tmp_path)
    first.suggest("a")
    first.suggest("b")
    first.save(str(tmp_path / "snapshot.pkl"))         # Ray Tune's last snapshot: a and b running
    first.on_trial_complete("a", result(10.0, 3))       # then the study moves on: a is told,
    asked_after_snapshot = first.suggest("c")           # and c is asked for; then SIGKILL

    second = searcher(tmp_path)
    second.restore(str(tmp_path / "snapshot.pkl"))
    second.on_trial_result("a", result(10.0, 3))        # Tune re-runs a's last epoch from its checkpoint
    second.on_trial_complete("a", result(10.0, 3))
    assert second.suggest("d") == asked_after_snapshot  # the new trial runs c's parameters again
    second.on_trial_complete("b", result(11.0, 3))
    second.on_trial_complete("d", result(12.0, 3))

    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    assert [(t.number, t.state, t.value) for t in study.trials] == [
        (0, TrialState.COMPLETE, 10.0), (1, TrialState.COMPLETE, 11.0),
        (2, TrialState.FAIL, None),                     # c: asked for, never recorded, never run
        (3, TrialState.COMPLETE, 12.0),                 # d: c's parameters, run
    ]
    assert study.trials[3].user_attrs == {RETRY_OF: 2}
    assert study.trials[3].params == study.trials[2].params


def test_plain_optuna_search_would_leave_the_study_wrong(tmp_path):
    """What ResumableOptunaSearch is for: Ray's OptunaSearch fails the same story."""
    from ray.tune.search.optuna import OptunaSearch

    first = searcher(tmp_path)
    first.suggest("a")
    first.save(str(tmp_path / "snapshot.pkl"))
    first.on_trial_complete("a", result(10.0, 3))

    plain = OptunaSearch(space=define_by_run, metric=METRIC, mode="max",
                         study_name="exp", storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / STUDY_FILE}"))
    plain.restore(str(tmp_path / "snapshot.pkl"))
    with pytest.raises(RuntimeError, match="finished"):
        OptunaSearch.on_trial_result(plain, "a", result(10.0, 3))


# ---- reading what is on disk ------------------------------------------------------------


def assert_every_trial_finished_once(experiment) -> None:
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment)).trials
    assert len(trials) == SAMPLES
    assert {trial.status for trial in trials} == {"TERMINATED"}
    study = optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment / STUDY_FILE}")
    ran = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(ran) == SAMPLES
    # Any other entry is an attempt the killed driver asked for and never recorded, run again since.
    retried = {t.user_attrs.get(RETRY_OF) for t in ran}
    assert all(t.state == TrialState.FAIL and t.number in retried for t in study.trials if t not in ran)
    for trial in trials:
        rows = [json.loads(line) for line in (experiment / trial.storage.trial_dir_name / "result.json").open()]
        assert rows[-1]["epoch"] == EPOCHS


def restored_from_checkpoint(result_file) -> bool:
    """A row whose epoch count is ahead of its iterations since (re)start continued a checkpoint."""
    rows = [json.loads(line) for line in result_file.open()]
    return any(row["epoch"] > row["iterations_since_restore"] for row in rows)


def snapshot(directory) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()}
