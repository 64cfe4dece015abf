"""What TensorBoard and optuna-dashboard read: every trial's per-epoch metrics as event files
under results/NAME (Ray Tune's for a search, the runner's own for `runner train`), and the
Optuna study in results/NAME/study.db. Both are read with the tools' own loaders."""

from __future__ import annotations

import json
import wsgiref.util
from pathlib import Path

import pytest

from runner.results import METRIC
from tests.conftest import SHARED_SEARCHED
from tests.tiny_spaces import tiny_trial

TAG = f"ray/tune/{METRIC}"                      # where Ray Tune's TBXLoggerCallback puts the metric


@pytest.fixture
def tuned(finished_search) -> Path:
    """The session's shared two-trial, two-epoch `runner tune`; its experiment directory."""
    return finished_search.experiment


def result_curves(experiment: Path) -> dict[str, list[tuple[int, float]]]:
    """{trial folder: [(epoch, val_pit_psnr)]} from each trial's result.json."""
    curves = {}
    for results in sorted(experiment.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        curves[results.parent.name] = [(row["training_iteration"], row[METRIC]) for row in rows]
    return curves


def tensorboard_curves(experiment: Path) -> dict[str, list[tuple[int, float]]]:
    """{run: [(step, val_pit_psnr)]} as `tensorboard --logdir experiment` loads them (its plugin multiplexer)."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.util.tensor_util import make_ndarray

    runs = EventMultiplexer()
    runs.AddRunsFromDirectory(str(experiment))
    runs.Reload()
    scalar_runs = runs.PluginRunToTagToContent("scalars")  # what the Scalars tab lists
    return {run: [(event.step, make_ndarray(event.tensor_proto).item()) for event in runs.Tensors(run, TAG)]
            for run, tags in scalar_runs.items() if TAG in tags}


def assert_same_curves(shown: dict, expected: dict) -> None:
    assert shown.keys() == expected.keys()
    for run, curve in expected.items():
        assert [step for step, _ in shown[run]] == [step for step, _ in curve], run
        assert [value for _, value in shown[run]] == pytest.approx([value for _, value in curve], rel=1e-6), run


def test_tensorboard_shows_every_trial_of_a_search_epoch_by_epoch(tuned):
    expected = result_curves(tuned)

    assert len(expected) == 2 and all([step for step, _ in curve] == [1, 2] for curve in expected.values())
    assert_same_curves(tensorboard_curves(tuned), expected)


def test_the_study_loads_through_optunas_storage_as_the_dashboard_loads_it(tuned):
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    # optuna-dashboard opens a sqlite:/// URL as exactly this RDBStorage.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tuned / 'study.db'}",
                                         skip_compatibility_check=True, skip_table_creation=True)

    (study,) = [study for study in storage.get_all_studies() if study.study_name == tuned.name]
    trials = storage.get_all_trials(storage.get_study_id_from_name(tuned.name))

    assert study.directions == [StudyDirection.MAXIMIZE]
    assert len(trials) == 2 and all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
    assert all(set(trial.params) == SHARED_SEARCHED for trial in trials)
    finals = sorted(curve[-1][1] for curve in result_curves(tuned).values())
    assert sorted(trial.value for trial in trials) == pytest.approx(finals, rel=1e-6)


def test_optuna_dashboard_serves_the_study(tuned):
    """The WSGI app `optuna-dashboard sqlite:///results/NAME/study.db` serves, asked what its web page asks."""
    from optuna_dashboard import wsgi

    app = wsgi(f"sqlite:///{tuned / 'study.db'}")

    (summary,) = [s for s in get_json(app, "/api/studies")["study_summaries"] if s["study_name"] == tuned.name]
    detail = get_json(app, f"/api/studies/{summary['study_id']}")

    assert summary["directions"] == ["maximize"]
    assert [trial["state"] for trial in detail["trials"]] == ["Complete", "Complete"]
    assert all({param["name"] for param in trial["params"]} == SHARED_SEARCHED for trial in detail["trials"])
    best = max(curve[-1][1] for curve in result_curves(tuned).values())
    assert detail["best_trials"][0]["values"] == [pytest.approx(best, rel=1e-6)]


def get_json(app, path: str) -> dict:
    """A GET through the plain WSGI interface (what wsgiref's server does, without a socket)."""
    environ: dict = {"PATH_INFO": path}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status == ["200 OK"], body[:500]
    return json.loads(body)


def test_tensorboard_shows_a_runner_train_run_and_its_resume(tmp_path, cifar_dir, capsys):
    from runner.cli import main
    from runner.config import TrialConfig
    from runner.results import read_experiment
    from runner.training.standalone import resume_one

    config = tmp_path / "tiny.yaml"
    config.write_text("# tiny\n" + tiny_trial(lr="2.0e-3") + "  threads: 1\n")
    experiment = tmp_path / "R" / "one"
    assert main(["train", "--config", str(config), "--data-dir", str(cifar_dir), "--max-epochs", "2",
                 "--name", "one", "--results", str(tmp_path / "R")]) == 0
    assert_same_curves(tensorboard_curves(experiment), result_curves(experiment))

    # On from the epoch-2 checkpoint to a third epoch: epoch 2 is logged again, and shown once.
    longer = TrialConfig.from_dict(read_experiment(experiment)["config"])
    longer.train.epochs = 3
    resume_one(longer, experiment, data_dir=str(cifar_dir))

    expected = result_curves(experiment)
    assert [step for step, _ in expected["trial_0"]] == [1, 2, 3]
    assert len(list((experiment / "trial_0").glob("events.out.tfevents.*"))) == 2
    assert_same_curves(tensorboard_curves(experiment), expected)
