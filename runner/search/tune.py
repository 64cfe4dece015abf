"""The only Ray code: Ray Tune trials driven by Optuna (TPE) and stopped early by ASHA.

Trials run in parallel on whatever the cluster has: a share of the GPUs when there are
any, CPUs otherwise, never a GPU the cluster lacks (such a trial would wait forever).
The Optuna study lives in the experiment directory (SQLite), so it outlives the run; Ray
Tune's own experiment state makes `--resume` continue a stopped search.
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.config import TrialConfig
from runner.errors import RunnerError
from runner.results import METRIC, SPACE_COPY, STUDY_FILE, experiment_dir, read_experiment, write_experiment
from runner.space import SearchSpace, TuneSettings, load_space

@dataclass
class TuneRequest:
    space_file: str
    name: str
    results: str
    data_dir: str | None
    settings: TuneSettings
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_failures: int = 0
    seed: int = 0


def train_trial(config: dict[str, Any], data_dir: str | None, max_epochs: int) -> None:
    """The Ray Tune trainable: one trial = `train.fit` with Ray's report and checkpoint."""
    from ray import tune

    from runner.training.checkpoint import load_checkpoint, save_checkpoint
    from runner.training.fit import fit

    trial = TrialConfig.from_dict(config["trial"])
    trial.train.epochs = max_epochs
    # One torch thread per CPU of this trial's share, so concurrent trials do not oversubscribe the cores.
    cpus = _assigned_cpus()
    trial.train.threads = trial.train.threads or max(1, int(cpus))

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = load_checkpoint(directory)

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, state)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    fit(trial, report, data_dir=data_dir, resume=resume)


def run(request: TuneRequest, address: str | None = None, resume: bool = False):
    """Run a search, or continue a stopped one (`resume`); returns Ray Tune's ResultGrid.

    A resumed search keeps its finished and errored trials as they are (an errored trial
    already had its --max-failures retries) and continues the unfinished ones from their
    last checkpoints. One stopped before Ray Tune's first snapshot starts over.
    """
    import ray
    from ray import tune

    from runner.search.recovery import has_saved_state

    directory = experiment_dir(request.results, request.name)
    space = load_space(request.space_file)
    start_ray(address)
    resources = trial_resources(ray.cluster_resources(), request.cpus_per_trial, request.gpus_per_trial)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data_dir=request.data_dir, max_epochs=request.settings.max_epochs),
        resources,
    )
    from runner.search.live import LiveView

    view = LiveView(request.settings.samples)
    if resume and has_saved_state(directory):
        # The live view and the searcher come back from the saved state with the rest.
        tuner = tune.Tuner.restore(str(directory), trainable, resume_unfinished=True, resume_errored=False)
    else:
        if not resume:
            write_experiment(directory, {"kind": "tune", "started": time.time(), "request": asdict(request)})
            shutil.copyfile(request.space_file, directory / SPACE_COPY)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher(space, request, directory),
                scheduler=_scheduler(request.settings),
                num_samples=request.settings.samples,
                max_concurrent_trials=_concurrency(ray.cluster_resources(), resources, request.settings.samples),
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=request.name,
                storage_path=str(directory.parent),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=2, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"
                ),
                failure_config=tune.FailureConfig(max_failures=request.max_failures),
                callbacks=[view],
                verbose=0,
            ),
        )
    return tuner.fit()


def trial_name(trial) -> str:
    """Short trial directory names (Ray's default packs every parameter into the name)."""
    return f"trial_{trial.trial_id}"


def start_ray(address: str | None) -> None:
    """Connect to a cluster at `address`, or start a private local Ray: token auth on, no dashboard.

    Ray still runs a minimal dashboard process for its own bookkeeping; it listens on
    127.0.0.1 only.
    """
    import ray

    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            ray.init(include_dashboard=False, dashboard_host="127.0.0.1", logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RunnerError(f"cannot start or reach {where}: {_first_line(error)}; {_RAY_HINT}") from None


_RAY_HINT = ("check that `ray start --head` runs there and that RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token) "
             "holds the cluster's token")
CONNECT_TIMEOUT_S = 10


def _check_reachable(address: str) -> None:
    """Fail fast on a wrong host:port: Ray's own connect retries for many minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto" or a ray:// URI: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise RunnerError(f"nothing answers at --address {address} ({error.strerror or error}); {_RAY_HINT}") from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def trial_resources(cluster: dict[str, float], cpus_per_trial: float | None, gpus_per_trial: float | None) -> dict[str, float]:
    gpus = cluster.get("GPU", 0.0)
    cpus = cluster.get("CPU", 1.0)
    if gpus_per_trial and gpus_per_trial > gpus:
        raise RunnerError(
            f"--gpus-per-trial {gpus_per_trial:g} asks for more GPUs than the cluster has ({gpus:g}); "
            "drop the flag to train on CPUs or add GPU nodes"
        )
    cpus_per_trial = cpus_per_trial or 1.0
    if cpus_per_trial > cpus:
        raise RunnerError(f"--cpus-per-trial {cpus_per_trial:g} is more than the cluster's {cpus:g} CPUs; lower it")
    if gpus_per_trial is None:
        # Share the GPUs: as many trials per GPU as CPUs allow, at most four.
        gpus_per_trial = 1.0 / min(4, max(1, math.floor(cpus / cpus_per_trial / gpus))) if gpus else 0.0
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}


def _concurrency(cluster: dict[str, float], resources: dict[str, float], samples: int) -> int:
    fits = math.floor(cluster.get("CPU", 1.0) / resources["cpu"])
    if resources["gpu"]:
        fits = min(fits, math.floor(cluster.get("GPU", 0.0) / resources["gpu"]))
    return max(1, min(samples, fits))


def _searcher(space: SearchSpace, request: TuneRequest, directory: Path):
    import optuna
    from runner.search.recovery import ResumableOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return ResumableOptunaSearch(
        space=space.define_by_run(),
        metric=METRIC,
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=request.seed),
        study_name=request.name,
        storage=optuna.storages.RDBStorage(f"sqlite:///{directory / STUDY_FILE}"),
        points_to_evaluate=request.settings.points_to_evaluate or None,
    )


def _scheduler(settings: TuneSettings):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        metric=METRIC,
        mode="max",
        time_attr="training_iteration",
        max_t=settings.max_epochs,
        grace_period=min(settings.grace_period, settings.max_epochs),
        reduction_factor=settings.reduction_factor,
    )


def _assigned_cpus() -> float:
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)


def load_request(directory: Path) -> TuneRequest:
    """The request an experiment was started with, so a resume runs the same search."""
    stored = read_experiment(directory)
    if stored.get("kind") != "tune":
        raise RunnerError(f"{directory.name} was not made by `runner tune`; only searches can be resumed")
    request = dict(stored["request"])
    request["settings"] = TuneSettings(**request["settings"])
    if (directory / SPACE_COPY).is_file():  # the original may have moved since
        request["space_file"] = str(directory / SPACE_COPY)
    return TuneRequest(**request)
