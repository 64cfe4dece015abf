"""The `tune:` section's choice of search: `objectives: [psnr, macs]` (Optuna's
multi-objective TPE over quality and cost, every trial run to the end, a two-valued study),
`sampler`, `scheduler` and `startup_trials`; and the one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import RunnerError
from runner.results import METRIC
from runner.space import load_space
from tests.conftest import TINY_SPACE

SPACE = TINY_SPACE.replace("  grace_period: 2\n", "  samples: 3\n  objectives: [psnr, macs]\n").replace("  samples: 2\n", "")


def tune(tmp_path: Path, data_dir: Path, text: str, *overrides) -> subprocess.CompletedProcess:
    (tmp_path / "space.yaml").write_text(text)
    command = [sys.executable, "-m", "runner.cli", "tune", "--space", str(tmp_path / "space.yaml"), "--name", "both",
               "--data-dir", str(data_dir), "--results", str(tmp_path / "R"), *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_two_objectives_run_every_trial_to_the_end_into_a_two_valued_study(tmp_path, cifar_dir):
    import optuna
    from optuna.study import StudyDirection

    done = tune(tmp_path, cifar_dir, SPACE)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "objectives psnr, macs: every trial runs its 2 epochs (ASHA stops trials on one metric, so it is off)" in done.stdout
    study = optuna.load_study(study_name="both", storage=f"sqlite:///{tmp_path / 'R' / 'both' / 'study.db'}")
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 3
    for trial_dir in sorted((tmp_path / "R" / "both").glob("trial_*")):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        assert [row["epoch"] for row in rows] == [1, 2]  # nothing stopped early
        last = rows[-1]
        told = [t for t in trials if t.values == [pytest.approx(last[METRIC]), last["macs"]]]
        assert len(told) == 1, (last[METRIC], last["macs"], [t.values for t in trials])
    assert {t.params["model.base_width"] for t in trials} <= {4, 8}
    assert all(t.values[1] > 0 for t in trials)


@pytest.mark.parametrize(
    "tune_section, complaint",
    [
        ("objectives: [macs]", "must list psnr, alone or with costs"),
        ("objectives: [psnr, psnr]", "once each"),
        ("objectives: [psnr, latency]", "from psnr, macs, params"),
        ("objectives: psnr", "got 'psnr'"),
        ("objectives: [psnr, macs]\n  grace_period: 2", "without ASHA, which stops trials on one metric; drop tune.grace_period"),
        ("objectives: [psnr, params]\n  scheduler: asha", "drop tune.scheduler"),
        ("sampler: grid", "tune.sampler is 'grid'; valid values: tpe, random"),
        ("scheduler: hyperband", "tune.scheduler is 'hyperband'; valid values: asha, fifo"),
        ("startup_trials: 0", "tune.startup_trials must be greater than 0, got 0"),
        ("max_epochs: 1\n  grace_period: 2", "tune.grace_period 2 is more than tune.max_epochs 1"),
    ],
)
def test_a_bad_tune_section_is_one_line(tmp_path, tune_section, complaint):
    path = tmp_path / "space.yaml"
    path.write_text(f"tune:\n  {tune_section}\nmodel:\n  family: unet\n")

    with pytest.raises(RunnerError) as raised:
        load_space(str(path))

    assert complaint in str(raised.value) and "\n" not in str(raised.value)


def test_sampler_and_scheduler_follow_the_tune_section():
    from optuna.samplers import RandomSampler, TPESampler
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from runner.search.tune import _sampler, _scheduler, grace_period
    from runner.space import TuneSettings

    default = TuneSettings()
    assert isinstance(_sampler(default, 0), TPESampler) and isinstance(_scheduler(default), ASHAScheduler)
    assert _sampler(TuneSettings(startup_trials=3), 0)._n_startup_trials == 3
    assert default.startup_trials == 4 and _sampler(default, 0)._constant_liar   # the measured defaults
    # ASHA's grace period: the space's own, else half of the epochs, at least one.
    assert [grace_period(TuneSettings(max_epochs=m)) for m in (1, 6, 11)] == [1, 3, 5]
    assert grace_period(TuneSettings(max_epochs=6, grace_period=1)) == 1
    assert isinstance(_sampler(TuneSettings(sampler="random"), 0), RandomSampler)
    assert isinstance(_scheduler(TuneSettings(scheduler="fifo")), FIFOScheduler)
    assert isinstance(_scheduler(TuneSettings(objectives=["psnr", "macs"])), FIFOScheduler)


def test_one_objective_keeps_asha(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("tune:\n  grace_period: 2\nmodel:\n  family: unet\n")
    assert load_space(str(path)).tune.objectives == ["psnr"] and not load_space(str(path)).tune.multi_objective
