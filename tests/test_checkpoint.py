"""The checkpoint format (runner.training.checkpoint): one TrainingState, old checkpoints still load and resume."""

import dataclasses
import json

import pytest
import torch

from runner.config import TrialConfig
from runner.errors import RunnerError
from runner.training.checkpoint import MODEL_FILE, TrainingState, ema_state, load_checkpoint, rebuild_model, save_checkpoint
from runner.training.fit import fit

# A trial configuration exactly as format-1 checkpoints stored it (TrialConfig.to_dict() of that time).
FORMAT_1_CONFIG = {
    "data": {"dataset": "cifar10", "channels": None, "image_size": None, "per_class": None, "val_images": 100,
             "val_pairs": 100, "augment": "flip", "shift": 0},
    "model": {"family": "unet", "widths": [4, 8], "bottleneck": 16, "block": "plain", "norm": "batch",
              "output": "consistent", "decoder": "separate", "tta": False, "unshuffle": 1, "latent_dim": 256},
    "train": {"lr": 2e-3, "batch_size": 32, "epochs": 2, "epoch_pairs": 256, "loss": "pit", "recon": "mse",
              "kl_weight": 1e-3, "schedule": "constant", "weight_decay": 0.0, "ema": 0.0, "seed": 0, "minutes": None,
              "threads": None, "compile": False, "precision": "auto", "channels_last": None, "device": None},
}
# The state of a generator on another kind of device: a CUDA generator's is 16 bytes (seed and offset),
# which a CPU generator refuses. Format 1 stored the training sampler's generator this way.
CUDA_GENERATOR_STATE = torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)


def config(ema: float = 0.0) -> TrialConfig:
    trial = TrialConfig.from_dict(FORMAT_1_CONFIG)
    trial.train.ema = ema
    trial.train.threads = 1  # seconds even on a busy machine, where torch's threads would wait on each other
    return trial


@pytest.fixture(scope="module", params=[0.0, 0.9], ids=["plain", "ema"])
def straight(request, cifar_dir):
    """Two uninterrupted epochs: (metrics, state) after each."""
    reports = []
    fit(config(request.param), lambda metrics, state: reports.append((metrics, state)), data_dir=cifar_dir)
    return request.param, reports


def format_1(state: TrainingState) -> dict:
    """`state` in the exact layout format-1 checkpoints have on disk."""
    return {
        "format": 1, "config": FORMAT_1_CONFIG, "input_shape": state.input_shape, "dataset": state.dataset,
        "epoch": state.epoch, "metrics": {k: v for k, v in state.metrics.items() if k not in ("device", "precision")},
        "model": state.model, "training_model": state.training_model, "ema": ema_state(state) if state.ema else None,
        "optimizer": state.optimizer,
        "sampler_generator": CUDA_GENERATOR_STATE, "elapsed_s": state.elapsed_s,
    }


def test_a_format_1_checkpoint_from_another_device_resumes_on_the_cpu(straight, tmp_path, cifar_dir):
    ema, reports = straight
    (tmp_path / "old").mkdir()
    torch.save(format_1(reports[0][1]), tmp_path / "old" / MODEL_FILE)

    resumed = []
    fit(config(ema), lambda metrics, state: resumed.append(metrics), data_dir=cifar_dir,
        resume=load_checkpoint(tmp_path / "old"))
    assert [metrics["epoch"] for metrics in resumed] == [2]
    # The second epoch is the uninterrupted run's: the same pairs, weights and optimizer state.
    assert resumed[0]["train_loss"] == pytest.approx(reports[1][0]["train_loss"], rel=1e-5)
    assert resumed[0]["val_pit_psnr"] == pytest.approx(reports[1][0]["val_pit_psnr"], abs=0.01)


def test_a_format_1_checkpoint_rebuilds_its_model(straight, tmp_path):
    _, reports = straight
    (tmp_path / "old").mkdir()
    torch.save(format_1(reports[0][1]), tmp_path / "old" / MODEL_FILE)
    state = load_checkpoint(tmp_path / "old")
    model = rebuild_model(state)
    assert not model.training and state.family == "unet" and state.data_config.val_pairs == 100
    for key, value in reports[0][1].model.items():
        assert torch.equal(model.state_dict()[key], value)


def test_the_checkpoint_round_trips_with_its_readable_summary(straight, tmp_path):
    _, reports = straight
    metrics, state = reports[-1]
    save_checkpoint(tmp_path / "new", state)
    loaded = load_checkpoint(tmp_path / "new")
    assert (loaded.epoch, loaded.metrics, loaded.config, loaded.elapsed_s) == (2, metrics, state.config, state.elapsed_s)
    summary = json.loads((tmp_path / "new" / "metrics.json").read_text())
    assert set(summary) == {"epoch", "metrics", "dataset", "input_shape", "family", "config"}  # what results.py reads
    assert (summary["epoch"], summary["family"], summary["input_shape"]) == (2, "unet", [3, 32, 32])


def test_each_state_is_a_snapshot_that_later_epochs_leave_alone(straight):
    _, reports = straight
    first, second = reports[0][1].optimizer["state"][0], reports[1][1].optimizer["state"][0]
    assert not torch.equal(first["exp_avg"], second["exp_avg"])
    assert all(value.device.type == "cpu" for value in first.values())


@pytest.mark.parametrize("values, fragment", [
    ({"format": 4}, "is not a checkpoint of this runner (formats 1, 2, 3)"),
    ({"weights": 1}, "is not a checkpoint of this runner"),
    ({"format": 2, "epoch": 1}, "does not hold a training state of this runner"),
])
def test_what_is_not_a_training_state_is_one_line(tmp_path, values, fragment):
    torch.save(values, tmp_path / MODEL_FILE)
    with pytest.raises(RunnerError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(tmp_path)


def test_a_run_checkpoints_every_n_epochs_after_each_improvement_and_at_its_end(straight, cifar_dir):
    """fit's checkpoint policy (runner tune's tune.checkpoint_every): a state after epochs 3 and 5 of
    5 when no epoch beats the best so far, after every epoch that does."""
    ema, reports = straight
    unbeaten = dataclasses.replace(reports[0][1], metrics={**reports[0][1].metrics, "val_pit_psnr": 99.0})
    for resume, scores in ((None, "improving"), (unbeaten, "never beaten")):
        trial = config(ema)
        trial.train.epochs = 5
        states = {}
        fit(trial, lambda metrics, state: states.update({metrics["epoch"]: state is not None}), data_dir=cifar_dir,
            resume=resume, checkpoint_every=3)
        # This tiny U-Net improves every epoch of a fresh run, so each one is checkpointed.
        expected = {2: False, 3: True, 4: False, 5: True} if resume else {epoch: True for epoch in range(1, 6)}
        assert states == expected, scores
