"""`runner train --resume`: a training run stopped by Ctrl-C or a kill continues from its
latest checkpoint, its clock counting the time already spent, its curve without a jump."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.training.checkpoint import load_checkpoint
from tests.tiny_spaces import tiny_trial

MINUTES = 0.3          # the budget of every run here
EPOCH_PAIRS = 2048     # a few seconds an epoch on one thread: about six epochs in the budget


def start(tmp_path: Path, data_dir: Path, *args) -> subprocess.Popen:
    command = [sys.executable, "-m", "runner.cli", "train", *map(str, args), "--results", str(tmp_path / "R")]
    if "--resume" not in args:
        command += ["--data-dir", str(data_dir)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def epochs(tmp_path: Path, name: str) -> list[int]:
    lines = (tmp_path / "R" / name / "trial_0" / "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def wait_for_epochs(tmp_path: Path, name: str, count: int, process: subprocess.Popen) -> None:
    results = tmp_path / "R" / name / "trial_0" / "result.json"
    deadline = time.monotonic() + 120
    while not (results.is_file() and len(results.read_text().splitlines()) >= count):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.2)


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("# tiny\n" + tiny_trial(lr="2.0e-3", epoch_pairs=EPOCH_PAIRS) + "  threads: 1\n")
    return path


def test_a_killed_run_resumes_to_as_many_epochs_as_an_uninterrupted_one(tmp_path, cifar_dir, config):
    straight = start(tmp_path, cifar_dir, "--config", config, "--minutes", MINUTES, "--name", "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    killed = start(tmp_path, cifar_dir, "--config", config, "--minutes", MINUTES, "--name", "killed")
    wait_for_epochs(tmp_path, "killed", 2, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)

    resumed = start(tmp_path, cifar_dir, "--resume", "killed")

    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    done, reference = epochs(tmp_path, "killed"), epochs(tmp_path, "straight")
    assert done == list(range(1, len(done) + 1))           # the curve goes on without a gap or a repeat
    assert abs(len(done) - len(reference)) <= 1
    checkpoints = sorted((tmp_path / "R" / "killed" / "trial_0").glob("checkpoint_*"))
    assert 1 <= len(checkpoints) <= 2                         # the best and the latest, no leftovers
    assert load_checkpoint(checkpoints[-1]).elapsed_s >= MINUTES * 60  # the clock counted the time before the kill


def test_ctrl_c_says_how_to_continue_and_resume_finishes(tmp_path, cifar_dir, config):
    run = start(tmp_path, cifar_dir, "--config", config, "--minutes", MINUTES, "--name", "stopped")
    wait_for_epochs(tmp_path, "stopped", 1, run)
    run.send_signal(signal.SIGINT)

    assert run.wait(timeout=60) == 130
    last = run.stderr.read().strip().splitlines()[-1]
    assert "runner train --resume stopped" in last
    resumed = start(tmp_path, cifar_dir, "--resume", "stopped", "--device", "cpu", "train.threads=2")  # where it runs may change
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    done = epochs(tmp_path, "stopped")
    assert done == list(range(1, len(done) + 1)) and len(done) >= 2


def test_resume_of_a_search_or_with_new_flags_is_one_line(tmp_path, cifar_dir, config):
    run = start(tmp_path, cifar_dir, "--config", config, "--max-epochs", 1, "--name", "one")
    assert run.wait(timeout=300) == 0
    (tmp_path / "R" / "search").mkdir()
    (tmp_path / "R" / "search" / "experiment.json").write_text(json.dumps({"kind": "tune"}))

    changed = start(tmp_path, cifar_dir, "--resume", "one", "--minutes", 1)
    retrained = start(tmp_path, cifar_dir, "--resume", "one", "train.threads=2", "train.lr=1")
    search = start(tmp_path, cifar_dir, "--resume", "search")

    assert changed.wait(timeout=60) == 2 and "drop --minutes" in changed.stderr.read()
    assert retrained.wait(timeout=60) == 2
    assert retrained.stderr.read().strip() == (
        "runner: error: --resume continues a run as it was started; it may change only train.device, "
        "train.threads, so drop train.lr"
    )
    assert search.wait(timeout=60) == 2 and "runner tune --resume" in search.stderr.read()
