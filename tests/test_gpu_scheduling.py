"""GPU resources that mean something, proven on a CPU machine: a real Ray head node that
declares 2 GPUs it does not have (`ray start --num-gpus 2`), token auth on.

- At `--gpus-per-trial 0.5`, 4 trials run at once, two on each GPU id, and each records
  the ids Ray gave it; the trials are told `train.device: cpu`, so they train here.
- Trials given a GPU while torch has no CUDA: the search stops before any trial, with
  the device policy's one line (asked by a Ray task with a trial's resources).
- A share a trial cannot use (1.5 GPUs, 0.4 of one) is one line, before Ray starts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.ray_processes import REPO, assert_one_error_line, head_node, run_runner
from tests.tiny_spaces import tiny_trial

GPUS, CPUS = 2, 4
SHARED = """\
# runner tune --space shared.yaml --address HOST:PORT --gpus-per-trial 0.5 (test-sized)
tune:
  samples: 4
  max_epochs: 3
  grace_period: 3        # no early stopping: all four run to the end
""" + tiny_trial(epoch_pairs=1024) + "  device: cpu           # the declared GPUs do not exist\n"


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory):
    """(marked processes, address) of a one-node Ray declaring 4 CPUs and 2 GPUs."""
    with head_node(tmp_path_factory.mktemp("gpu-cluster"), "--num-cpus", CPUS, "--num-gpus", GPUS) as (processes, _, address):
        yield processes, address


def test_gpus_per_trial_is_one_gpu_or_a_1_over_k_share():
    from runner.errors import RunnerError
    from runner.search.tune import gpu_share

    assert [gpu_share(v) for v in (None, 0, 1, 0.5, 0.25, 0.333)] == [None, 0, 1.0, 0.5, 0.25, 0.3333]  # on Ray's grid
    for unusable in (1.5, 2, 0.4, 0.7, -1, float("nan"), float("inf"), 1e-9):
        with pytest.raises(RunnerError, match="a trial trains on one device"):
            gpu_share(unusable)


def test_runner_tune_with_a_share_a_trial_cannot_use_is_one_line(tmp_path, processes, tiny_space):
    run = run_runner(processes, "tune", "--space", tiny_space, "--gpus-per-trial", "1.5", "--results", tmp_path / "R")

    assert run.code == 2
    assert_one_error_line(run, "--gpus-per-trial 1.5: a trial trains on one device", "1/k (0.5, 0.25, ...)")
    assert not (tmp_path / "R").exists()


@pytest.mark.timeout(600)
def test_half_a_gpu_each_runs_four_trials_at_once_two_per_gpu(tmp_path, cifar_dir, gpu_cluster):
    processes, address = gpu_cluster
    (tmp_path / "shared.yaml").write_text(SHARED)

    run = run_runner(processes, "tune", "--space", tmp_path / "shared.yaml", "--address", address,
                     "--gpus-per-trial", "0.5", "--name", "shared", "--results", tmp_path / "R", "--data-dir", cifar_dir)

    assert run.code == 0, run.err
    assert "shared: 4 trials: 4 finished" in run.out
    trials = trial_spans(tmp_path / "R" / "shared")
    print("\n".join(f"{t['trial']}: gpu_ids {t['gpu_ids']}, {t['start']:.1f} s to {t['end']:.1f} s" for t in trials))
    assert all(len(t["gpu_ids"]) == 1 for t in trials)          # a share of one GPU, recorded in every result
    assert Counter(t["gpu_ids"][0] for t in trials) == {0: 2, 1: 2}
    assert most_at_once(trials) == 4
    for gpu in (0, 1):
        assert most_at_once([t for t in trials if t["gpu_ids"] == [gpu]]) == 2  # never more than its share


@pytest.mark.timeout(300)
def test_a_gpu_trial_without_cuda_stops_the_search_before_any_trial(tmp_path, cifar_dir, gpu_cluster):
    import torch

    if torch.version.cuda is not None:
        pytest.skip("torch here is a CUDA build; the check is for a CPU-only torch on a node with GPUs")
    processes, address = gpu_cluster
    started = time.monotonic()

    run = run_runner(processes, "tune", "--space", REPO / "search_spaces" / "unet.yaml", "--address", address,
                     "--gpus-per-trial", "1", "--name", "nocuda", "--results", tmp_path / "R", "--data-dir", cifar_dir)

    took = time.monotonic() - started
    line = assert_one_error_line(run, "given GPU", f"the installed torch {torch.__version__} is a CPU-only build",
                                 "install a CUDA build of torch")
    print(f"{took:.0f} s: {line}")
    assert took < 60
    assert not (tmp_path / "R" / "nocuda").exists()  # nothing trained, not even an experiment started


def trial_spans(experiment: Path) -> list[dict]:
    """Each trial's GPU ids and when it ran, in seconds from the first trial's start (from result.json)."""
    trials = []
    for result in sorted(experiment.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        assert len({json.dumps(row["gpu_ids"]) for row in rows}) == 1
        trials.append({"trial": result.parent.name, "gpu_ids": rows[0]["gpu_ids"],
                       "start": rows[0]["timestamp"] - rows[0]["time_total_s"], "end": rows[-1]["timestamp"]})
    first = min(t["start"] for t in trials)
    return [{**t, "start": t["start"] - first, "end": t["end"] - first} for t in trials]


def most_at_once(trials: list[dict]) -> int:
    """The largest number of these trials running at one instant."""
    events = sorted([(t["start"], 1) for t in trials] + [(t["end"], -1) for t in trials], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most
