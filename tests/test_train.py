"""train.fit in a plain process: reporting, self-describing checkpoints, resume, the clock."""

import pytest
import torch
from pydantic import ValidationError

from runner.config import TrialConfig
from runner.data.sampler import AUGMENTS, PairSampler, load_pair_data, translate
from runner.errors import RunnerError
from runner.training.checkpoint import load_checkpoint, rebuild_model, save_checkpoint
from runner.training.fit import Evaluator, fit, refresh_batch_norm
from runner.training.schedules import lr_factor

# Two evaluation paths of the same weights (fit's and a rebuilt model's) agree to this many
# dB: enough for the order of float sums, and for TF32 convolutions on a GPU.
SAME_DB = 0.01

TINY = {
    "data": {"val_images": 100, "val_pairs": 100},
    "model": {"family": "unet", "widths": [4, 8], "bottleneck": 16, "output": "consistent"},
    "train": {"epochs": 2, "batch_size": 32, "epoch_pairs": 256, "lr": 2e-3, "threads": 1},  # 1 thread: seconds on a busy machine too
}


def tiny_config(**train) -> TrialConfig:
    return TrialConfig.from_dict({**TINY, "train": {**TINY.get("train", {}), **train}})


def test_fit_reports_every_epoch_with_a_rebuildable_checkpoint(cifar_dir, tmp_path):
    reports = []
    final = fit(tiny_config(), lambda metrics, state: reports.append((metrics, state)), data_dir=cifar_dir)

    assert [metrics["epoch"] for metrics, _ in reports] == [1, 2]
    assert (final["device"], final["precision"]) == ("cpu", "fp32")  # what the run used, for result.json
    save_checkpoint(tmp_path / "checkpoint", reports[-1][1])
    state = load_checkpoint(tmp_path / "checkpoint")
    data = load_pair_data(state.data_config, cifar_dir)
    assert Evaluator(data)(rebuild_model(state))["val_pit_psnr"] == pytest.approx(final["val_pit_psnr"], abs=SAME_DB)


def test_validation_pairs_are_the_same_for_every_trial(cifar_dir):
    first = load_pair_data(tiny_config().data, cifar_dir)
    second = load_pair_data(tiny_config().data, cifar_dir)
    assert torch.equal(first.val_pairs, second.val_pairs) and torch.equal(first.val, second.val)
    assert (first.val_pairs[:, 0] != first.val_pairs[:, 1]).all()


def test_resume_continues_as_the_uninterrupted_run_would(cifar_dir):
    """Each epoch's pairs come from (seed, epoch): a resumed run trains on what it would have."""
    states = []
    fit(tiny_config(epochs=1), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    resumed = []
    fit(tiny_config(epochs=3), lambda metrics, state: resumed.append(metrics), data_dir=cifar_dir, resume=states[-1])
    straight = []
    fit(tiny_config(epochs=3), lambda metrics, state: straight.append(metrics), data_dir=cifar_dir)
    assert [metrics["epoch"] for metrics in resumed] == [2, 3]
    for after_resume, uninterrupted in zip(resumed, straight[1:]):
        assert after_resume["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-5)
        assert after_resume["val_pit_psnr"] == pytest.approx(uninterrupted["val_pit_psnr"], abs=SAME_DB)


def test_the_same_seed_gives_the_same_numbers(cifar_dir):
    first, second = (fit(tiny_config(epochs=1), data_dir=cifar_dir) for _ in range(2))
    for measured in ("train_seconds", "eval_seconds", "startup_seconds"):  # the only measured figures
        assert first.pop(measured) > 0 and second.pop(measured) > 0
    assert first == second


@pytest.mark.parametrize("epochs", [None, 1000])
def test_a_time_budget_ends_with_a_final_evaluation_and_checkpoint(cifar_dir, epochs):
    """epochs: None trains until the clock ends the run; a number of epochs never reached changes nothing."""
    reports = []
    fit(tiny_config(epochs=epochs, minutes=0.001), lambda metrics, state: reports.append((metrics, state)), data_dir=cifar_dir)
    assert len(reports) == 1 and "val_pit_psnr" in reports[0][0]
    assert reports[0][1].elapsed_s >= 0.06


def test_no_epochs_and_no_clock_is_one_line():
    with pytest.raises(RunnerError, match=r"train.epochs is null \(train until the time budget ends\) but train.minutes is not set"):
        tiny_config(epochs=None)
    config = tiny_config(epochs=None, minutes=1.0)
    with pytest.raises(ValidationError, match=r"train.epochs is null \(train until the time budget ends\) but train.minutes is not set"):
        config.train.minutes = None   # an assignment after the config was built is checked too


def test_ema_checkpoint_holds_the_averaged_weights(cifar_dir):
    states = []
    fit(tiny_config(epochs=1, ema=0.9), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    state = states[-1]
    assert state.ema is not None
    differs = [not torch.equal(state.model[k], state.training_model[k]) for k in state.model if k.endswith("weight")]
    assert any(differs)


def test_ema_weights_get_batch_norm_statistics_of_their_own(cifar_dir):
    """Statistics averaged along with the weights do not fit the averaged weights; they are recomputed."""
    states = []
    fit(tiny_config(epochs=2, ema=0.9), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    model = rebuild_model(states[-1])
    stored = {name: module.running_var.clone() for name, module in model.named_modules()
              if isinstance(module, torch.nn.BatchNorm2d)}
    refresh_batch_norm(model, load_pair_data(states[-1].data_config, cifar_dir).train, batch_size=64, seed=1)  # other pairs
    for name, module in model.named_modules():
        if name in stored:
            assert torch.allclose(stored[name], module.running_var, rtol=0.2, atol=1e-3), name


def test_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) < 1e-9
    assert lr_factor("onecycle", 0.0) < lr_factor("onecycle", 0.1) == 1.0


def levers_config() -> TrialConfig:
    """The CPU levers together: bf16, channels-last, a shared decoder, the PSNR loss, shifted sources."""
    config = tiny_config(epochs=1, precision="bf16", channels_last=True, recon="psnr")
    config.model.decoder, config.data.augment, config.data.shift = "shared", "sources", 2
    return config


def test_cpu_levers_train_bf16_channels_last_shared_decoder_and_shifts(cifar_dir):
    final = fit(levers_config(), data_dir=cifar_dir)
    assert final["precision"] == "bf16"  # asked for explicitly, bf16 autocasts on the CPU too


@pytest.mark.parametrize("make_config", [lambda: tiny_config(), levers_config], ids=["plain", "cpu-levers"])
def test_one_or_two_epochs_beat_the_average_on_real_images(real_images, make_config):
    """Consistent outputs start at the Average baseline; training on real images moves them above it."""
    config = make_config()
    config.data.dataset = real_images.dataset
    final = fit(config, data_dir=real_images.data_dir)
    assert final["val_pit_psnr"] > final["val_baseline_psnr"]


def test_shifts_move_each_source_on_its_own():
    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).remainder(251).to(torch.uint8).view(4, 3, 8, 8)
    moved = translate(images.float(), 2, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape
    assert not torch.equal(moved, images.float())
    # Every output row is a row of the reflected padding of the input: pixels move, none are invented.
    assert set(moved.unique().tolist()) <= set(images.float().unique().tolist())


def sampled(sampler: PairSampler, epoch: int) -> list[torch.Tensor]:
    return [torch.stack([a, b]) for _, a, b in sampler.epoch(epoch, pair_count=8, batch_size=4)]


@pytest.mark.parametrize("augment", list(AUGMENTS))
def test_an_epochs_batches_depend_on_the_seed_and_the_epoch_only(augment):
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    first = sampled(PairSampler(images, augment, seed=3, shift=1), epoch=4)
    again = sampled(PairSampler(images, augment, seed=3, shift=1), epoch=4)  # a fresh sampler: nothing carried over
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    other = sampled(PairSampler(images, augment, seed=3, shift=1), epoch=5)
    assert not all(torch.equal(x, y) for x, y in zip(first, other))


def test_an_unknown_augment_is_one_line():
    with pytest.raises(RunnerError, match="unknown data.augment 'mirror'; valid: none, flip, sources"):
        PairSampler(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), "mirror", seed=0)
