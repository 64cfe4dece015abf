"""`runner tune --warm-start`: earlier trials seed a new study (runner/search/warm.py).

The earlier searches here are Optuna studies run directly over the project's space code,
with a made-up score, so each test takes well under a second; one real `runner tune
--warm-start` continues the shared finished search.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runner.reports.report import load_study
from runner.results import write_experiment
from runner.search.warm import WARM_FROM, own_trials_study, seed_study, study_storage, warm_trials
from runner.space import load_space, suggest
from tests.conftest import SHARED_SPACE

# The earlier search: the shared space's two families, searched widths and learning rates,
# and a parameter of the autoencoder's own (ae.train.weight_decay); no fixed first points.
POINTS = "  points_to_evaluate:\n    - {model.family: unet}\n    - {model.family: ae}\n"
EARLIER = SHARED_SPACE.replace(POINTS, "") + "families:\n  ae:\n    train: {weight_decay: {uniform: [0.0, 0.01]}}\n"
TRIALS = 16


def score(params: dict) -> float:
    """The made-up validation PIT-PSNR: base_width 8 is 10 dB better than 4."""
    return 10.0 * (params["model.base_width"] == 8) + 1000 * params["train.lr"]


def write_space(folder: Path, text: str, name: str = "space.yaml"):
    (folder / name).write_text(text)
    return load_space(folder / name)


def earlier_search(results: Path, name: str = "earlier", objectives: tuple = ("psnr",)) -> list[optuna.trial.FrozenTrial]:
    """A finished `runner tune` experiment as warm start reads it: experiment.json and study.db."""
    space = write_space(results.parent, EARLIER, "earlier.yaml")
    directory = results / name
    write_experiment(directory, {"kind": "tune", "request": {"name": name, "settings": {"objectives": list(objectives)}}})
    study = optuna.create_study(storage=study_storage(directory), study_name=name, directions=["maximize"] * len(objectives),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda trial: (suggest(trial, space), score(trial.params))[1], n_trials=TRIALS)
    study.enqueue_trial({"model.family": "unet"})
    failed = study.ask()  # a trial that diverged: Optuna's FAIL, never a warm trial
    suggest(failed, space)
    study.tell(failed, state=TrialState.FAIL)
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_warm_trials_are_complete_and_the_searcher_samples_from_them(tmp_path, capsys):
    from runner.search.tune import TuneRequest, _searcher

    earlier = earlier_search(tmp_path / "R")
    space = write_space(tmp_path, EARLIER)
    warm = warm_trials(tmp_path / "R", ["earlier"], space, ["psnr"])
    assert capsys.readouterr().out == f"warm start: {TRIALS} trials from earlier (0 skipped: not in this space)\n"

    def first_asks(name: str, seeded: list) -> list[int]:
        """The base widths the project's searcher (Ray's OptunaSearch over study.db) proposes first."""
        directory = tmp_path / "R" / name
        directory.mkdir()
        request = TuneRequest(str(space.path), name, str(tmp_path / "R"), None, space.tune, warm_start=["earlier"])
        if seeded:
            seed_study(directory, name, ["psnr"], seeded)
        searcher = _searcher(space, request, directory)
        return [searcher.suggest(f"t{i}")["trial"]["model"]["widths"][0] for i in range(8)]

    with_warm, without = first_asks("new", warm), first_asks("cold", [])
    study = optuna.load_study(study_name="new", storage=study_storage(tmp_path / "R" / "new"))
    seeded = [trial for trial in study.trials if WARM_FROM in trial.user_attrs]
    assert [trial.state for trial in seeded] == [TrialState.COMPLETE] * TRIALS
    assert [(t.params, t.value, t.user_attrs[WARM_FROM]) for t in seeded] == \
        [(t.params, t.value, f"earlier/{t.number}") for t in earlier]
    # Past its 4 random startup trials from the first ask on, TPE proposes the better width
    # (later asks spread out: constant_liar counts the asked, untold ones as bad); without
    # the warm trials the same seeded sampler's first asks are random.
    assert with_warm[:4] == [8, 8, 8, 8] != without[:4], (with_warm, without)


@pytest.mark.parametrize(("new_space", "fits"), [
    # the unet trials with lr inside the narrower range; model.family, now a constant, must equal it
    (EARLIER.replace("{choice: [unet, ae]}", "unet").replace("  latent_dim: 16\n", "").replace("4.0e-3]", "2.0e-3]"),
     lambda p: p["model.family"] == "unet" and p["train.lr"] <= 2e-3),
    # a family parameter the unet trials never drew: only the ae trials fit
    (EARLIER + "  unet:\n    train: {weight_decay: {uniform: [0.0, 0.01]}}\n", lambda p: p["model.family"] == "ae"),
    # lr fixed at a value no trial drew: none fits
    (EARLIER.replace("{loguniform: [1.0e-3, 4.0e-3]}", "2.0e-3"), lambda p: False),
])
def test_trials_that_do_not_fit_the_space_are_skipped_and_counted(tmp_path, capsys, new_space, fits):
    earlier = earlier_search(tmp_path / "R")
    expected = [trial for trial in earlier if fits(trial.params)]
    warm = warm_trials(tmp_path / "R", ["earlier", "earlier"], write_space(tmp_path, new_space), ["psnr"])
    assert [trial.user_attrs[WARM_FROM] for trial in warm] == [f"earlier/{trial.number}" for trial in expected]
    assert capsys.readouterr().out == (f"warm start: {len(expected)} trials from earlier "
                                       f"({TRIALS - len(expected)} skipped: not in this space)\n")


def test_a_seeded_study_seeds_no_further_study_and_its_report_shows_its_own_trials(tmp_path, capsys):
    earlier_search(tmp_path / "R")
    space = write_space(tmp_path, EARLIER)
    directory = tmp_path / "R" / "second"
    write_experiment(directory, {"kind": "tune", "request": {"name": "second", "settings": {"objectives": ["psnr"]}}})
    seed_study(directory, "second", ["psnr"], warm_trials(tmp_path / "R", ["earlier"], space, ["psnr"]))
    study = optuna.load_study(study_name="second", storage=study_storage(directory))
    study.optimize(lambda trial: (suggest(trial, space), score(trial.params))[1], n_trials=3)

    assert [trial.number for trial in study.trials if WARM_FROM not in trial.user_attrs] == [TRIALS, TRIALS + 1, TRIALS + 2]
    assert len(own_trials_study(study).trials) == 3  # what `runner report` plots for it
    reseeded = warm_trials(tmp_path / "R", ["second"], space, ["psnr"])  # its own trials, not the ones it was seeded with
    assert [trial.user_attrs[WARM_FROM] for trial in reseeded] == [f"second/{n}" for n in (TRIALS, TRIALS + 1, TRIALS + 2)]


def test_runner_tune_warm_starts_from_a_finished_search(tmp_path, finished_search):
    results = tmp_path / "R"
    shutil.copytree(finished_search.experiment, results / finished_search.name)  # the shared search stays as it was
    (tmp_path / "folder.yaml").write_text(SHARED_SPACE)
    one_epoch = ["--samples", "1", "--max-epochs", "1", "tune.grace_period=1", "tune.points_to_evaluate=[]"]
    done = subprocess.run([str(Path(sys.executable).parent / "runner"), "tune", "--space", str(tmp_path / "folder.yaml"),
                           *one_epoch, "--data-dir", str(finished_search.images), "--results", str(results),
                           "--name", "more", "--warm-start", finished_search.name],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"warm start: 2 trials from {finished_search.name} (0 skipped: not in this space)" in done.stdout
    assert "more: 1 trial: 1 finished" in done.stdout  # the summary counts this search's own trial only
    study = optuna.load_study(study_name="more", storage=study_storage(results / "more"))
    assert [(trial.state, WARM_FROM in trial.user_attrs) for trial in study.trials] == \
        [(TrialState.COMPLETE, True)] * 2 + [(TrialState.COMPLETE, False)]
    stored = json.loads((results / "more" / "experiment.json").read_text())
    assert stored["request"]["warm_start"] == [finished_search.name]
    own, _ = load_study(results / "more", stored)  # what `runner report` plots
    assert len(own.trials) == 1 and WARM_FROM not in own.trials[0].user_attrs
