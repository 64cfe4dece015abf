"""`runner tune --warm-start`: a new study seeded with the finished trials of earlier searches.

An earlier trial goes into the new study (Optuna's `add_trial`, state COMPLETE, its value as
Optuna recorded it) when the new space, drawing that trial's values, asks for nothing the
trial lacks, every value lies inside the new distribution, and every value the trial drew
that the new space does not search equals the new space's constant. The seeded trials are
in the study before Ray Tune asks for the first one, so TPE models them from the start;
they are not Ray Tune trials, so they count toward no `tune.samples`, and each is marked
with the trial it came from (`warm_start_from`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from runner.errors import RunnerError
from runner.results import OBJECTIVES, STUDY_FILE, find_experiment, read_experiment
from runner.space import SearchSpace, suggest

WARM_FROM = "warm_start_from"   # user attr of a seeded trial: "<experiment>/<its trial number there>"
_ABSENT = object()              # a key the space does not set (None may be a choice's value)


def study_storage(directory: Path) -> str:
    """The Optuna storage of an experiment's study (SQLite, in the experiment directory)."""
    return f"sqlite:///{directory / STUDY_FILE}"


def warm_trials(results: str | Path, names: list[str], space: SearchSpace, objectives: list[str]) -> list[FrozenTrial]:
    """The finished trials of the experiments `names` that fit `space`, as new trials; prints one line.

    An unknown experiment, one `runner train` made, or one with other objectives is a RunnerError.
    """
    names = list(dict.fromkeys(names))  # an experiment named twice seeds once
    earlier = [(name, trial) for name in names for trial in _finished_trials(find_experiment(results, name), objectives)]
    seeded = [trial for trial in (fit_trial(trial, space, f"{name}/{trial.number}") for name, trial in earlier) if trial]
    skipped = len(earlier) - len(seeded)
    print(f"warm start: {len(seeded)} trials from {', '.join(names)} ({skipped} skipped: not in this space)")
    return seeded


def seed_study(directory: Path, study_name: str, objectives: list[str], trials: list[FrozenTrial]) -> None:
    """Create the experiment's study with `trials` in it, before the searcher loads it."""
    directions = ["maximize" if OBJECTIVES[name][1] == "max" else "minimize" for name in objectives]
    study = optuna.create_study(storage=study_storage(directory), study_name=study_name, directions=directions)
    study.add_trials(trials)


def own_trials_study(study: optuna.Study) -> optuna.Study:
    """`study` without the trials it was seeded with (in memory, when it has any): what its own search did."""
    trials = study.get_trials(deepcopy=False)
    if not any(WARM_FROM in trial.user_attrs for trial in trials):
        return study
    own = optuna.create_study(directions=study.directions, study_name=study.study_name)
    own.add_trials([trial for trial in trials if WARM_FROM not in trial.user_attrs])
    return own


def fit_trial(earlier: FrozenTrial, space: SearchSpace, origin: str) -> FrozenTrial | None:
    """`earlier` as a trial of `space` (its distributions, marked with `origin`), or None when it does not fit."""
    replay = optuna.trial.FixedTrial(earlier.params)
    try:
        with warnings.catch_warnings():
            # FixedTrial only warns of a value outside a distribution; create_trial below refuses it.
            warnings.simplefilter("ignore")
            suggest(replay, space)  # ValueError: the space asks for a parameter the trial lacks, or a choice it lacks
        if any(_constant(space, name) != value for name, value in earlier.params.items() if name not in replay.params):
            return None
        return optuna.trial.create_trial(params=replay.params, distributions=replay.distributions,
                                         values=earlier.values, user_attrs={WARM_FROM: origin})
    except (ValueError, RunnerError):  # RunnerError: widths the space cannot build
        return None


def _finished_trials(directory: Path, objectives: list[str]) -> list[FrozenTrial]:
    """An earlier search's own COMPLETE trials (not those it was itself seeded with)."""
    stored = read_experiment(directory)
    if stored.get("kind") != "tune":
        raise RunnerError(f"--warm-start {directory.name}: it was made by `runner train` (one configuration, no "
                          "Optuna study); name `runner tune` experiments")
    theirs = stored["request"]["settings"].get("objectives", ["psnr"])
    if theirs != objectives:
        raise RunnerError(f"--warm-start {directory.name}: it optimised {', '.join(theirs)}, this search "
                          f"{', '.join(objectives)}; name experiments with the same tune.objectives")
    if not (directory / STUDY_FILE).is_file():
        return []  # stopped before its first trial: nothing to seed with (load_study would create the file)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=None, storage=study_storage(directory))
    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if WARM_FROM not in trial.user_attrs]


def _constant(space: SearchSpace, name: str) -> Any:
    """The value `space` holds for Optuna's parameter `name` (`train.lr`, `vae.train.kl_weight`), or a
    distribution, or _ABSENT; a family's own value comes before the shared one, as in `suggest`."""
    *family, section, key = name.split(".")
    own = space.families.get(family[0], {}).get(section, {}) if family else {}
    return own.get(key, space.params.get(section, {}).get(key, _ABSENT))
