"""Faults inside trials, caused for real: a loss weight that makes the loss NaN, a config
value that fails inside the trial, a trial process killed mid-run. Each faulty trial is
reported with its reason and the search goes on; a trial's own failure (diverged, a bad
config) ends it at once, since a retry would fail the same way, while `--max-failures`
retries a killed trial from its last checkpoint; a search whose every trial failed ends in
one error line.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runner.results import STUDY_FILE
from tests.ray_processes import (
    assert_one_error_line, first_reported_checkpoint, run_runner, start_runner, wait_for,
)
from tests.tiny_spaces import tiny_trial

# A trial on a CPU asked to train on CUDA: the device policy fails it inside the trial
# (the data: section, which the driver loads for every trial, is refused before the search).
ON_CUDA = "cuda"
# A KL term weighted 1e38 overflows float32: the VAE's loss becomes NaN in epoch 1 (learning
# rates that would, such as 1e20, are refused before a search starts: train.lr is at most 1).
NAN_KL_WEIGHT = "1.0e+38"

FAULTY = """\
# runner tune --space faulty.yaml: one trial trains, one diverges, one fails on its device
tune:
  samples: 3
  max_epochs: 2
  grace_period: 2
  points_to_evaluate:
    - {{train.device: cpu, model.family: unet}}
    - {{train.device: cpu, model.family: vae}}
    - {{train.device: {on_cuda}, model.family: unet}}
families:
  vae:
    train: {{kl_weight: {nan_kl}}}
""".format(nan_kl=NAN_KL_WEIGHT, on_cuda=ON_CUDA) + tiny_trial(lr="1.0e-3").replace(
    "  family: unet\n", "  family: {choice: [unet, vae]}\n") + f"  device: {{choice: [cpu, {ON_CUDA}]}}\n"


def write_space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.timeout(900)
def test_diverged_and_errored_trials_are_reported_not_retried_and_the_search_goes_on(tmp_path, cifar_dir, processes):
    space = write_space(tmp_path, FAULTY)

    run = run_runner(processes, "tune", "--space", space, "--name", "faulty", "--results", tmp_path / "R",
                     "--data-dir", cifar_dir, "--max-failures", 2)

    assert run.code == 0, run.err
    assert "faulty: 3 trials: 1 finished, 1 diverged, 1 errored" in run.out
    assert "diverged: loss became nan in epoch 1; lower train.lr or train.kl_weight" in run.out
    assert f"errored: train.device is {ON_CUDA} but this trial was given no GPU" in run.out
    assert "Traceback" not in run.out + run.err
    study = optuna.load_study(study_name="faulty", storage=f"sqlite:///{tmp_path / 'R' / 'faulty' / STUDY_FILE}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert set(retries(tmp_path / "R" / "faulty").values()) == {0}


@pytest.mark.timeout(600)
def test_with_max_failures_2_a_diverging_trial_runs_once_and_is_reported_as_diverged(tmp_path, cifar_dir, processes):
    vae = tiny_trial(lr="1.0e-3").replace("  family: unet\n", "  family: vae\n") + f"  kl_weight: {NAN_KL_WEIGHT}\n"
    space = write_space(tmp_path, "tune:\n  grace_period: 1\n" + vae)
    experiment = tmp_path / "R" / "nan"

    run = run_runner(processes, "tune", "--space", space, "--samples", 1, "--max-epochs", 2, "--max-failures", 2,
                     "--name", "nan", "--results", tmp_path / "R", "--data-dir", cifar_dir)

    assert "nan: 1 trial: 1 diverged" in run.out
    assert_one_error_line(run, "every trial of nan failed, the first with: loss became nan in epoch 1; lower train.lr")
    assert "Traceback" not in run.out + run.err
    assert list(retries(experiment).values()) == [0]            # Ray Tune never retried it
    (trial,) = experiment.glob("trial_*/result.json")
    rows = [json.loads(line) for line in trial.open()]
    assert [(row["epoch"], row["failed"], row["training_iteration"]) for row in rows] == [(0, "diverged", 1)]  # one run, ended in its first epoch
    assert not (trial.parent / "error.txt").exists()
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{experiment / STUDY_FILE}")
    assert [t.state for t in study.trials] == [TrialState.FAIL]


@pytest.mark.timeout(600)
def test_every_trial_failing_is_one_error_line_and_there_is_nothing_to_export(tmp_path, cifar_dir, processes):
    space = write_space(tmp_path, tiny_trial() + f"  device: {ON_CUDA}\n")

    run = run_runner(processes, "tune", "--space", space, "--samples", 1, "--max-epochs", 1, "--name", "doomed",
                     "--results", tmp_path / "R", "--data-dir", cifar_dir)

    assert_one_error_line(run, "every trial of doomed failed", f"train.device is {ON_CUDA} but this trial was given no GPU")
    export = run_runner(processes, "export", "--experiment", "doomed", "--results", tmp_path / "R", "-o", tmp_path / "E")
    assert_one_error_line(export, "doomed has no checkpoint yet", "runner tune --resume doomed")
    assert not (tmp_path / "E").exists()


@pytest.mark.timeout(900)
def test_max_failures_retries_a_killed_trial_from_its_last_checkpoint(tmp_path, cifar_dir, processes):
    space = write_space(tmp_path, "tune:\n  grace_period: 3\n" + tiny_trial())
    experiment = tmp_path / "R" / "retried"
    driver = start_runner(processes, tmp_path, "tune", "--space", space, "--samples", 2, "--max-epochs", 3,
                          "--max-failures", 1, "--name", "retried", "--results", tmp_path / "R", "--data-dir", cifar_dir)
    wait_for(lambda: first_reported_checkpoint(experiment) is not None, 600, "the first checkpoint", driver)
    checkpointed = first_reported_checkpoint(experiment).name

    for worker in processes.trial_workers():
        worker.send_signal(signal.SIGKILL)
    code = driver.wait(timeout=600)

    out = (tmp_path / "driver.out").read_text()
    assert code == 0, out + (tmp_path / "driver.err").read_text()
    assert "retried: 2 trials: 2 finished" in out
    rows = [json.loads(line) for line in (experiment / checkpointed / "result.json").open()]
    assert rows[-1]["epoch"] == 3
    assert any(row["epoch"] > row["iterations_since_restore"] for row in rows), "the retry started from scratch"
    assert retries(experiment)[checkpointed] >= 1


def retries(experiment) -> dict[str, int]:
    from ray.tune import ExperimentAnalysis

    return {Path(t.path).name: t.num_failures for t in ExperimentAnalysis(str(experiment)).trials}
