"""Ray Tune trials driven by Optuna (TPE) and stopped early by ASHA.

Trials run in parallel on whatever the cluster has: a share of the GPUs when there are
any, CPUs otherwise, never a GPU the cluster lacks (such a trial would wait forever).
Before the first trial, one small Ray task with a trial's resources asks the device policy
where trials will run, so a GPU node whose torch has no CUDA stops the search in one line.
The driver loads the search's data once and trials read it from Ray's object store
(runner/search/shared_data.py); each trial writes a checkpoint every
`tune.checkpoint_every` epochs, after an improvement and at its end, and Ray keeps its
best and its latest.
The Optuna study lives in the experiment directory (SQLite), so it outlives the run; Ray
Tune's own experiment state makes `--resume` continue a stopped search.
"""

from __future__ import annotations

import math
import socket
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from runner.config import TrialConfig
from runner.errors import RunnerError
from runner.results import METRIC, OBJECTIVES, SPACE_COPY, continue_hint, experiment_dir, read_experiment, write_experiment
from runner.search import private_ray_on_loopback
from runner.search.shared_data import SharedData, load_shared_data, trial_data
from runner.sections import build
from runner.space import SearchSpace, TuneSettings, load_space

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

MAX_TRIALS_PER_GPU = 100     # --gpus-per-trial 1/k up to k = 100
RAY_RESOURCE_STEPS = 10_000  # Ray keeps resource amounts on a grid of 1/10000
PREFLIGHT_TIMEOUT_S = 60     # for the device check to get a trial's CPUs and GPUs somewhere
CONNECT_TIMEOUT_S = 10


@dataclass
class TuneRequest:
    space_file: str                       # the YAML file (a built-in space's own path, for one)
    name: str
    results: str
    data_dir: str | None
    settings: TuneSettings
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None   # None: share the GPUs if any; else 0 (CPUs) or 1/k
    max_failures: int = 0
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # key=value changes to the YAML, from the command line
    space_source: str = ""                # what the user named: a path or "built-in NAME"
    warm_start: list[str] = field(default_factory=list)  # earlier experiments whose trials seeded the study

    def __post_init__(self):
        self.gpus_per_trial = gpu_share(self.gpus_per_trial)


def gpu_share(gpus_per_trial: float | None) -> float | None:
    """--gpus-per-trial as Ray gets it: 1, or 1/k for k trials sharing a GPU; 0 trains on CPUs.

    A trial trains on one device, so more than one GPU would sit idle, and a share that is
    not 1/k (1.5, 0.4) leaves a GPU's rest to no trial. 1/k is rounded down to Ray's grid
    of 1/10000 (1/7 -> 0.1428), so k shares never add up to more than the one GPU
    whatever way Ray rounds them (tests/test_ray_shares.py runs k = 2, 3, 6, 7 at once).
    """
    if not gpus_per_trial:
        return gpus_per_trial
    trials_per_gpu = round(1 / gpus_per_trial) if 0 < gpus_per_trial <= 1 else 0
    if not 1 <= trials_per_gpu <= MAX_TRIALS_PER_GPU or not math.isclose(gpus_per_trial * trials_per_gpu, 1, rel_tol=1e-3):
        raise RunnerError(
            f"--gpus-per-trial {gpus_per_trial:g}: a trial trains on one device; give 1 for a GPU each, "
            f"or 1/k (0.5, 0.25, ...) for k trials sharing one GPU, or 0 to train on CPUs"
        )
    return math.floor(RAY_RESOURCE_STEPS / trials_per_gpu) / RAY_RESOURCE_STEPS


def train_trial(config: dict[str, Any], settings: TuneSettings, data_dir: str | None,
                shared_data: SharedData | None = None) -> None:
    """The Ray Tune trainable: one trial = `train.fit` with Ray's report and checkpoints, on
    the search's shared data (runner/search/shared_data.py) when the driver loaded its section.

    A trial that diverges or meets a RunnerError ends with `failure_result` as its last
    result instead of raising: a retry would fail the same way (runner/search/outcomes.py).
    """
    started = time.perf_counter()
    import ray
    from ray import tune

    from runner.errors import TrialDiverged
    from runner.search.outcomes import failure_result
    from runner.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
    from runner.training.fit import fit

    trial = TrialConfig.from_dict(config["trial"])
    trial.train.epochs = settings.max_epochs

    gpu_ids = ray.get_gpu_ids()
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = load_checkpoint(directory)

    epochs_done = resume.epoch if resume else 0

    def report(metrics: dict[str, Any], state: TrainingState | None) -> None:
        nonlocal epochs_done
        # The GPUs Ray gave the trial go in every result, so a search shows where each trial ran.
        metrics = {**metrics, "gpu_ids": gpu_ids}
        if state is None:
            tune.report(metrics)
        else:
            with tempfile.TemporaryDirectory() as directory:
                save_checkpoint(directory, state)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        epochs_done = metrics["epoch"]

    try:
        # Ray's GPUs and CPU share decide the device and the torch threads (runner.training.device).
        fit(trial, report, data_dir=data_dir, data=trial_data(shared_data, trial), resume=resume, gpu_ids=gpu_ids,
            cpus=_assigned_cpus(), started=started, checkpoint_every=settings.checkpoint_every)
    except (TrialDiverged, RunnerError) as error:
        tune.report({**failure_result(error, epochs_done), "gpu_ids": gpu_ids})


def run_search(request: TuneRequest, address: str | None = None, resume: bool = False, warm: Sequence[FrozenTrial] = ()):
    """Run a search, or continue a stopped one (`resume`); returns Ray Tune's ResultGrid.

    A new search's study starts with the `warm` trials (runner/search/warm.py: `warm_trials`).

    A resumed search keeps its finished and errored trials as they are (an errored trial
    already had its --max-failures retries) and continues the unfinished ones from their
    last checkpoints. One stopped before Ray Tune's first snapshot starts over.
    """
    directory = experiment_dir(request.results, request.name)
    space = load_space(request.space_file, request.overrides)
    shared_data = load_shared_data(space, request.data_dir)  # before Ray starts: a missing dataset is one line
    start_ray(address)  # before Ray's first import here: a private Ray is set up before it

    import ray
    from ray import tune

    from runner.search.live import LiveView
    from runner.search.outcomes import has_saved_state
    from runner.search.warm import seed_study

    resources = trial_resources(ray.cluster_resources(), request.cpus_per_trial, request.gpus_per_trial)
    if resources["gpu"]:
        check_trial_device(space, resources)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, settings=request.settings, data_dir=request.data_dir, shared_data=shared_data),
        resources,
    )
    del shared_data  # Ray's object store holds it now; the driver's own copy can go
    view = LiveView(request.settings.samples)
    if resume and has_saved_state(directory):
        # The live view and the searcher come back from the saved state with the rest.
        tuner = tune.Tuner.restore(str(directory), trainable, resume_unfinished=True, resume_errored=False)
    else:
        if not resume:
            write_experiment(directory, {"kind": "tune", "started": time.time(), "request": asdict(request)})
            (directory / SPACE_COPY).write_text(space.yaml_text())  # what --resume runs, overrides applied
            if warm:
                seed_study(directory, request.name, request.settings.objectives, list(warm))
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
                # Each trial's best checkpoint, and its latest (Ray keeps the latest whatever num_to_keep says).
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"
                ),
                failure_config=tune.FailureConfig(max_failures=request.max_failures),
                # Ray adds its own loggers beside these: result.json, progress.csv and the
                # TensorBoard events (tensorboardX comes with ray[tune]) in every trial's folder.
                callbacks=[view],
                verbose=0,
            ),
        )
    return tuner.fit()


def trial_name(trial) -> str:
    """Short trial directory names (Ray's default packs every parameter into the name)."""
    return f"trial_{trial.trial_id}"


def start_ray(address: str | None) -> None:
    """Connect to a cluster at `address`, or start a private local Ray: token auth on, no
    dashboard, every socket on loopback (see `private_ray_on_loopback`).

    Ray still runs a minimal dashboard process for its own bookkeeping; it listens on
    127.0.0.1 only, if at all.
    """
    if not address:
        private_ray_on_loopback()
    import ray

    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # "local": always a new Ray of its own, even when RAY_ADDRESS names a cluster.
            ray.init(address="local", include_dashboard=False, dashboard_host="127.0.0.1",
                     logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RunnerError(f"cannot start or reach {where}: {_first_line(error)}; {_RAY_HINT}") from None


_RAY_HINT = ("check that `ray start --head` runs there and that RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token) "
             "holds the cluster's token")


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
        gpus_per_trial = gpu_share(1.0 / min(4, max(1, math.floor(cpus / cpus_per_trial / gpus)))) if gpus else 0.0
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}


def check_trial_device(space: SearchSpace, resources: dict[str, float]) -> None:
    """Ask the device policy where trials will run, before any trial starts.

    The question runs as a Ray task with a trial's CPUs and GPUs, so it sees the torch of a
    node that trials run on (on a cluster it may differ from the driver's). A trial given a
    GPU while torch there has no CUDA would stop in its first second; this stops the search
    instead, with the policy's one line.
    """
    import ray

    constants = {key: spec for key, spec in space.params.get("train", {}).items() if not isinstance(spec, dict)}
    probe = ray.remote(num_cpus=resources["cpu"], num_gpus=resources["gpu"])(_device_problem).remote(constants)
    try:
        problem = ray.get(probe, timeout=PREFLIGHT_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(probe, force=True)
        raise RunnerError(
            f"no node gave a trial's {resources['cpu']:g} CPU and {resources['gpu']:g} GPU within "
            f"{PREFLIGHT_TIMEOUT_S} s; check `ray status` for busy or missing GPU nodes"
        ) from None
    if problem:
        raise RunnerError(problem)


def _device_problem(train: dict[str, Any]) -> str | None:
    """In a Ray task: the device policy's verdict for a trial given this task's GPUs, as one line."""
    import ray

    from runner.training.device import resolve

    try:
        resolve(TrialConfig.from_dict({"train": train}).train, ray.get_gpu_ids())
    except RunnerError as error:
        return str(error)
    return None


def _concurrency(cluster: dict[str, float], resources: dict[str, float], samples: int) -> int:
    fits = math.floor(cluster.get("CPU", 1.0) / resources["cpu"])
    if resources["gpu"]:
        fits = min(fits, math.floor(cluster.get("GPU", 0.0) / resources["gpu"]))
    return max(1, min(samples, fits))


def _searcher(space: SearchSpace, request: TuneRequest, directory: Path):
    import optuna

    from runner.search.searcher import ResumableOptunaSearch
    from runner.search.warm import study_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metrics, modes = zip(*(OBJECTIVES[name] for name in request.settings.objectives))
    multi = request.settings.multi_objective
    return ResumableOptunaSearch(
        space=space.define_by_run(),
        metric=list(metrics) if multi else METRIC,
        mode=list(modes) if multi else "max",
        sampler=_sampler(request.settings, request.seed),
        study_name=request.name,
        storage=optuna.storages.RDBStorage(study_storage(directory)),
        points_to_evaluate=request.settings.points_to_evaluate or None,
    )


def _sampler(settings: TuneSettings, seed: int | None):
    import optuna

    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE handles several objectives itself (Optuna's MOTPE): one sampler for both kinds of search.
    # multivariate (widths and learning rate model jointly) and constant_liar (trials running in
    # parallel count as bad, so they are not drawn twice) are Optuna 5's defaults, set here so
    # Optuna 4 samples the same way (where both are marked experimental, hence the filter).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=settings.startup_trials, multivariate=True, constant_liar=True
        )


def _scheduler(settings: TuneSettings):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if settings.multi_objective or settings.scheduler == "fifo":
        return FIFOScheduler()  # every trial to max_epochs: ASHA ranks trials on one metric only
    return ASHAScheduler(
        metric=METRIC,
        mode="max",
        time_attr="training_iteration",
        max_t=settings.max_epochs,
        grace_period=grace_period(settings),
        reduction_factor=settings.reduction_factor,
    )


def grace_period(settings: TuneSettings) -> int:
    """ASHA's grace period: the space's (TuneSettings keeps it within max_epochs), else half of max_epochs."""
    return settings.grace_period or max(1, settings.max_epochs // 2)


def _assigned_cpus() -> float:
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)


def load_request(directory: Path) -> TuneRequest:
    """The request an experiment was started with, so a resume runs the same search."""
    stored = read_experiment(directory)
    if stored.get("kind") != "tune":
        raise RunnerError(f"{directory.name} was not made by `runner tune`; {continue_hint(directory)}")
    request = dict(stored["request"])
    request["settings"] = build(TuneSettings, request["settings"], "tune")
    if (directory / SPACE_COPY).is_file():  # the original may have moved since; the copy has the overrides in
        request["space_file"], request["overrides"] = str(directory / SPACE_COPY), []
    return TuneRequest(**request)
