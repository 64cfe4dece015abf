"""train.fit in a plain process: reporting, self-describing checkpoints, resume, the clock."""

import torch

from runner.training.checkpoint import load_checkpoint, rebuild_model, save_checkpoint
from runner.config import TrialConfig
from runner.data.sampler import load_pair_data
from runner.training.fit import Evaluator, fit, refresh_batch_norm
from runner.training.schedules import lr_factor

TINY = {
    "data": {"val_images": 100, "val_pairs": 100},
    "model": {"family": "unet", "widths": [4, 8], "bottleneck": 16, "output": "consistent"},
    "train": {"epochs": 2, "batch_size": 32, "epoch_pairs": 256, "lr": 2e-3},
}


def tiny_config(**train) -> TrialConfig:
    config = TrialConfig.from_dict(TINY)
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def test_fit_reports_every_epoch_with_a_rebuildable_checkpoint(cifar_dir, tmp_path):
    reports = []
    final = fit(tiny_config(), lambda metrics, state: reports.append((metrics, state)), data_dir=cifar_dir)

    assert [metrics["epoch"] for metrics, _ in reports] == [1, 2]
    assert final["val_pit_psnr"] > final["val_baseline_psnr"]  # consistent outputs start at the baseline and improve
    save_checkpoint(tmp_path / "checkpoint", reports[-1][1])
    model, config = rebuild_model(load_checkpoint(tmp_path / "checkpoint"))
    data = load_pair_data(config.data, cifar_dir)
    assert Evaluator(data)(model)["val_pit_psnr"] == final["val_pit_psnr"]


def test_validation_pairs_are_the_same_for_every_trial(cifar_dir):
    first = load_pair_data(tiny_config().data, cifar_dir)
    second = load_pair_data(tiny_config().data, cifar_dir)
    assert torch.equal(first.val_pairs, second.val_pairs) and torch.equal(first.val, second.val)
    assert (first.val_pairs[:, 0] != first.val_pairs[:, 1]).all()


def test_resume_continues_from_the_checkpoint_epoch(cifar_dir):
    states = []
    fit(tiny_config(epochs=1), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    resumed = []
    fit(tiny_config(epochs=3), lambda metrics, state: resumed.append(metrics["epoch"]), data_dir=cifar_dir, resume=states[-1])
    assert resumed == [2, 3]


def test_a_time_budget_ends_with_a_final_evaluation_and_checkpoint(cifar_dir):
    reports = []
    fit(tiny_config(epochs=1000, minutes=0.001), lambda metrics, state: reports.append(metrics), data_dir=cifar_dir)
    assert len(reports) == 1 and "val_pit_psnr" in reports[0]


def test_ema_checkpoint_holds_the_averaged_weights(cifar_dir):
    states = []
    fit(tiny_config(epochs=1, ema=0.9), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    state = states[-1]
    assert state["ema"] is not None
    differs = [not torch.equal(state["model"][k], state["training_model"][k]) for k in state["model"] if k.endswith("weight")]
    assert any(differs)


def test_ema_weights_get_batch_norm_statistics_of_their_own(cifar_dir):
    """Statistics averaged along with the weights do not fit the averaged weights; they are recomputed."""
    states = []
    fit(tiny_config(epochs=2, ema=0.9), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    model, config = rebuild_model(states[-1])
    stored = {name: module.running_var.clone() for name, module in model.named_modules()
              if isinstance(module, torch.nn.BatchNorm2d)}
    refresh_batch_norm(model, load_pair_data(config.data, cifar_dir).train, batch_size=64, seed=1)  # other pairs
    for name, module in model.named_modules():
        if name in stored:
            assert torch.allclose(stored[name], module.running_var, rtol=0.2, atol=1e-3), name


def test_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) < 1e-9
    assert lr_factor("onecycle", 0.0) < lr_factor("onecycle", 0.1) == 1.0


def test_cpu_levers_train_bf16_channels_last_shared_decoder_and_shifts(cifar_dir):
    config = tiny_config(epochs=1, precision="bf16", channels_last=True, recon="psnr")
    config.model.decoder, config.data.augment, config.data.shift = "shared", "sources", 2
    final = fit(config, data_dir=cifar_dir)
    assert final["val_pit_psnr"] > final["val_baseline_psnr"]


def test_shifts_move_each_source_on_its_own():
    from runner.data.sampler import PairSampler

    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).remainder(251).to(torch.uint8).view(4, 3, 8, 8)
    moved = PairSampler(images, "none", 0, shift=2)._translate(images.float())
    assert moved.shape == images.shape
    assert not torch.equal(moved, images.float())
    # Every output row is a row of the reflected padding of the input: pixels move, none are invented.
    assert set(moved.unique().tolist()) <= set(images.float().unique().tolist())
