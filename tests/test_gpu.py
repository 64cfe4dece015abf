"""The GPU tier: training, checkpoints, export and a shared-GPU search on a real CUDA device.

Marked `gpu` and skipped where torch sees no CUDA device; `scripts/gpu-check.sh` runs it
first on a GPU machine (`pytest -m gpu tests/test_gpu.py`). Each test is one tiny epoch or
two, so the tier takes a minute or two there.
"""

from __future__ import annotations

import json

import pytest
import torch

from runner.cli import main
from runner.config import TrialConfig
from runner.results import best_checkpoint
from runner.training.checkpoint import load_checkpoint
from runner.training.device import resolve
from runner.training.fit import Clock, build, evaluate, fit, train_epoch
from tests.ray_processes import run_runner
from tests.tiny_spaces import tiny_trial

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU tier needs a CUDA device, and torch here sees none"),
]

TINY = {
    "data": {"val_images": 100, "val_pairs": 100},
    "model": {"family": "unet", "widths": [8, 16], "bottleneck": 32, "output": "consistent"},
    "train": {"epochs": 1, "batch_size": 32, "epoch_pairs": 512, "lr": 2e-3, "device": "cuda"},
}


def config(model: dict | None = None, **train) -> TrialConfig:
    return TrialConfig.from_dict({**TINY, "model": {**TINY["model"], **(model or {})}, "train": {**TINY["train"], **train}})


def test_one_epoch_on_cuda_in_bf16_and_channels_last(cifar_dir):
    trial = config(precision="bf16", channels_last=True)
    plan = resolve(trial.train, gpu_ids=None)
    run = build(trial, plan, cifar_dir, None)
    run.clock = Clock(None)
    loss, steps, _ = train_epoch(run, 0)
    scores = evaluate(run)

    assert (plan.device, plan.precision, plan.channels_last) == ("cuda:0", "bf16", True)
    assert next(run.model.parameters()).is_cuda and run.data.train.is_cuda
    convolutions = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions if w.shape[-1] > 1)
    assert steps == 512 // 32 and torch.isfinite(torch.tensor(loss))
    assert scores["val_pit_psnr"] > 0


def test_ema_with_batch_norm_refresh_on_cuda(cifar_dir):
    states = []
    metrics = fit(config(ema=0.9), lambda m, state: states.append(state), data_dir=cifar_dir)

    state = states[-1]
    assert metrics["device"] == "cuda:0"
    means = [key for key in state.model if key.endswith("running_mean")]
    assert means, "the tiny U-Net has BatchNorm layers"
    # The averaged weights carry BatchNorm statistics of their own, recomputed on the GPU.
    assert any(not torch.equal(state.model[key], state.training_model[key]) for key in means)
    assert all(tensor.device.type == "cpu" for tensor in state.model.values())   # checkpoints hold CPU tensors


def test_the_vae_trains_on_cuda(cifar_dir):
    metrics = fit(config(model={"family": "vae", "latent_dim": 8, "output": "free"}, kl_weight=1e-3), data_dir=cifar_dir)

    assert metrics["device"] == "cuda:0" and metrics["train_loss"] == metrics["train_loss"]   # not NaN
    assert metrics["val_pit_psnr"] > 0


def test_train_compile_on_cuda(cifar_dir):
    metrics = fit(config(compile=True), data_dir=cifar_dir)

    assert metrics["device"] == "cuda:0" and metrics["val_pit_psnr"] > 0


def test_a_gpu_checkpoint_resumes_and_exports_on_the_cpu(tmp_path, cifar_dir):
    (tmp_path / "tiny.yaml").write_text(tiny_trial(lr="2.0e-3", epoch_pairs=256))
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--device", "cuda", "--max-epochs", "1",
                 "--name", "gpu", "--results", str(tmp_path / "R"), "--data-dir", str(cifar_dir)]) == 0
    checkpoint = best_checkpoint(tmp_path / "R" / "gpu")
    state = load_checkpoint(checkpoint.path)
    assert state.metrics["device"] == "cuda:0"

    on_cpu = TrialConfig.from_dict({**state.config, "train": {**state.config["train"], "device": "cpu", "epochs": 2}})
    reports = []
    fit(on_cpu, lambda m, s: reports.append(m), data_dir=cifar_dir, resume=state)
    assert [(m["epoch"], m["device"]) for m in reports] == [(2, "cpu")]

    assert main(["export", "--best", "--experiment", "gpu", "--results", str(tmp_path / "R"),
                 "-o", str(tmp_path / "E"), "--data-dir", str(cifar_dir)]) == 0
    assert (tmp_path / "E" / "gpu-unet.onnx").is_file()


@pytest.mark.timeout(600)
def test_two_trials_share_one_gpu_at_half_each(tmp_path, cifar_dir, processes):
    space = tmp_path / "half.yaml"
    space.write_text("tune:\n  samples: 2\n  max_epochs: 2\n  grace_period: 2\n" + tiny_trial(epoch_pairs=1024))

    run = run_runner(processes, "tune", "--space", space, "--gpus-per-trial", "0.5", "--cpus-per-trial", "1",
                     "--name", "half", "--results", tmp_path / "R", "--data-dir", cifar_dir)

    assert run.code == 0, run.err
    assert "half: 2 trials: 2 finished" in run.out
    rows = [json.loads(line) for result in sorted((tmp_path / "R" / "half").glob("trial_*/result.json"))
            for line in result.read_text().splitlines()]
    assert {(row["device"], tuple(row["gpu_ids"])) for row in rows} == {("cuda:0", (0,))}
    spans = {}
    for row in rows:
        start, end = spans.get(row["trial_id"], (float("inf"), 0.0))
        spans[row["trial_id"]] = (min(start, row["timestamp"] - row["time_total_s"]), max(end, row["timestamp"]))
    (a_start, a_end), (b_start, b_end) = spans.values()
    assert a_start < b_end and b_start < a_end   # the two trials ran at the same time
