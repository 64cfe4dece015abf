"""A node lost mid-search: a real two-node Ray cluster on this machine, token auth on.

The head and a worker node each give one CPU, so the two trials run one per node. When
the worker node's raylet is killed, its trial fails, Ray Tune retries it from its last
checkpoint on the node that is left (`--max-failures`), and the search ends with every
trial finished and every trial in the Optuna study once.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from runner.results import STUDY_FILE
from tests.ray_processes import RAY, MarkedProcesses, free_port, raylet_of, wait_for
from tests.tiny_spaces import tiny_trial

SPACE = """\
# runner tune --space node-loss.yaml --address HOST:PORT --max-failures 2 (test-sized)
tune:
  samples: 2
  max_epochs: 3
  grace_period: 3
""" + tiny_trial(epoch_pairs=4096)  # epochs of a few seconds: the killed node is still training


@pytest.fixture
def processes(tmp_path):
    marked = MarkedProcesses(tmp_path)
    # Token auth on every node and for the driver; the dead node is noticed within seconds.
    marked.env.update(RAY_AUTH_MODE="token", RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    yield marked
    marked.stop_all()


@pytest.fixture
def short_temp_dir():
    """Ray's unix sockets live under its temp dir, and socket paths must stay under 108 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def start_node(processes: MarkedProcesses, log: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([str(RAY), "start", "--num-cpus", "1", "--disable-usage-stats", "--block", *map(str, args)],
                            env=processes.env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def trial_workers_of(raylet: psutil.Process) -> set[int]:
    return {p.pid for p in raylet.children(recursive=True) if " ".join(p.cmdline()).startswith("ray::ImplicitFunc")}


def trial_reported_from(experiment: Path, pids: set[int]) -> Path | None:
    """The trial directory whose recorded results came from one of `pids`, once it has a checkpoint."""
    for result in experiment.glob("*/result.json"):
        reporters = {json.loads(line).get("pid") for line in result.read_text().splitlines() if line.endswith("}")}
        if reporters & pids and any(result.parent.glob("checkpoint_*/model.pt")):
            return result.parent
    return None


@pytest.mark.timeout(1200)
def test_search_survives_losing_a_worker_node(tmp_path, cifar_dir, processes, short_temp_dir):
    port = free_port()
    head = start_node(processes, tmp_path / "head.log", "--head", "--port", port, "--node-ip-address", "127.0.0.1",
                      "--include-dashboard", "false", "--temp-dir", short_temp_dir / "head")
    wait_for(lambda: raylet_of(head) is not None, 120, "the head node", head)
    worker = start_node(processes, tmp_path / "worker.log", "--address", f"127.0.0.1:{port}",
                        "--node-ip-address", "127.0.0.1", "--temp-dir", short_temp_dir / "worker")
    wait_for(lambda: raylet_of(worker) is not None, 120, "the worker node", worker)
    worker_raylet = raylet_of(worker)
    (tmp_path / "node-loss.yaml").write_text(SPACE)
    results, experiment = tmp_path / "results", tmp_path / "results" / "lost"

    driver = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "tune", "--space", tmp_path / "node-loss.yaml", "--address", f"127.0.0.1:{port}",
         "--max-failures", "2", "--name", "lost", "--results", results, "--data-dir", cifar_dir],
        env=processes.env, stdout=open(tmp_path / "driver.out", "w"), stderr=open(tmp_path / "driver.err", "w"),
    )
    wait_for(lambda: trial_reported_from(experiment, trial_workers_of(worker_raylet)) is not None, 600,
             "a checkpoint of the trial on the worker node", driver)
    lost_trial = trial_reported_from(experiment, trial_workers_of(worker_raylet)).name
    worker_raylet.send_signal(signal.SIGKILL)
    code = driver.wait(timeout=900)

    out = (tmp_path / "driver.out").read_text()
    assert code == 0, out + (tmp_path / "driver.err").read_text()
    assert "lost: 2 trials: 2 finished" in out
    assert_trial_retried_from_checkpoint(experiment, lost_trial)
    study = optuna.load_study(study_name="lost", storage=f"sqlite:///{experiment / STUDY_FILE}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]


def assert_trial_retried_from_checkpoint(experiment: Path, trial_dir: str) -> None:
    from ray.tune import ExperimentAnalysis

    trials = {t.storage.trial_dir_name: t for t in ExperimentAnalysis(str(experiment)).trials}
    assert {t.status for t in trials.values()} == {"TERMINATED"}
    assert trials[trial_dir].num_failures >= 1
    rows = [json.loads(line) for line in (experiment / trial_dir / "result.json").open()]
    assert rows[-1]["epoch"] == 3
    assert any(row["epoch"] > row["iterations_since_restore"] for row in rows), "the retry started from scratch"
