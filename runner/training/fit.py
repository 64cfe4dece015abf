"""Training one configuration: `fit(config, report)` -> final metrics.

`fit` knows nothing about Ray: it calls `report(metrics, state)` after every epoch with
the metrics and a checkpoint state, and the caller decides where that goes (a Ray Tune
checkpoint, a local directory, a test's list). It runs the same in a plain process, in a
test and in a trial.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from runner.training.checkpoint import CHECKPOINT_FORMAT
from runner.errors import TrialDiverged
from runner.training.losses import total_loss
from runner.training.schedules import lr_factor
from runner.training.metrics import baseline_scores, separation_scores
from runner.models import build_model
from runner.data.sampler import PairData, PairSampler, load_pair_data, make_mixtures

if TYPE_CHECKING:  # the config is a later stage: only its type is used here
    from runner.config import TrialConfig

Report = Callable[[dict[str, Any], dict[str, Any]], None]
EVAL_BATCH = 250
BATCH_NORM_REFRESH_BATCHES = 16   # training batches that set the averaged weights' BatchNorm statistics


def choose_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    config: TrialConfig,
    report: Report | None = None,
    *,
    data_dir=None,
    resume: dict[str, Any] | None = None,
    device: str | None = None,
    data: PairData | None = None,
) -> dict[str, Any]:
    """Train `config`, reporting after each epoch; resume from a checkpoint state if given."""
    train = config.train
    torch.manual_seed(train.seed)
    if train.threads:
        torch.set_num_threads(train.threads)
    device = choose_device(device)
    data = data or load_pair_data(config.data, data_dir, device)
    model = build_model(config.model, data.channels, data.image_size).to(device)
    channels_last = train.channels_last if train.channels_last is not None else device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    bf16 = train.precision == "bf16" or (train.precision == "auto" and device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    ema = _make_ema(model, train.ema)
    sampler = PairSampler(data.train, config.data.augment, train.seed, config.data.shift)
    start_epoch, elapsed = 0, 0.0
    if resume is not None:
        start_epoch, elapsed = _restore(resume, model, optimizer, ema, sampler)

    forward_train = torch.compile(model.forward_train) if train.compile else model.forward_train
    evaluator = Evaluator(data)
    pairs_per_epoch = train.epoch_pairs or len(data.train)
    steps_per_epoch = max(1, pairs_per_epoch // train.batch_size)
    clock = Clock(train.minutes, already_spent=elapsed)
    metrics: dict[str, Any] = {}
    for epoch in range(start_epoch, train.epochs):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum, steps = torch.zeros((), device=device), 0
        for mixture, source_a, source_b in sampler.epoch(steps_per_epoch * train.batch_size, train.batch_size):
            progress = max((epoch * steps_per_epoch + steps) / (train.epochs * steps_per_epoch), clock.fraction)
            for group in optimizer.param_groups:
                group["lr"] = train.lr * lr_factor(train.schedule, progress)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = forward_train(mixture)
                loss = total_loss(
                    outputs, source_a, source_b,
                    recon=train.recon, permutation_invariant=train.loss == "pit", kl_weight=train.kl_weight,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach()
            steps += 1
            if clock.out_of_time:
                break
        train_loss = loss_sum.item() / max(steps, 1)  # waits for the device, so the time below is complete
        train_seconds = time.perf_counter() - epoch_start
        if not math.isfinite(train_loss):
            raise TrialDiverged(f"loss became {train_loss} in epoch {epoch + 1}; lower train.lr")
        evaluated = model
        if ema is not None:
            evaluated = ema.module
            refresh_batch_norm(evaluated, data.train, train.batch_size, train.seed)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "train_seconds": train_seconds,
                   "train_pairs": steps * train.batch_size, **evaluator(evaluated)}
        if report is not None:
            report(metrics, _state(config, data, epoch + 1, metrics, evaluated, model, optimizer, ema, sampler, clock))
        if clock.out_of_time:
            break
    return metrics


class Clock:
    """Wall-clock budget of a run, counting time spent before a resume."""

    def __init__(self, minutes: float | None, already_spent: float = 0.0):
        self.budget = minutes * 60 if minutes else None
        self.start = time.monotonic() - already_spent

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def fraction(self) -> float:
        return self.elapsed / self.budget if self.budget else 0.0

    @property
    def out_of_time(self) -> bool:
        return self.budget is not None and self.elapsed >= self.budget


class Evaluator:
    """Scores a model on the fixed validation pairs; the Average baseline is computed once."""

    def __init__(self, data: PairData):
        self.data = data
        self.baseline = self._mean(self._batches(lambda mixture, a, b: baseline_scores(a, b)))

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        scores = self._mean(self._batches(lambda mixture, a, b: separation_scores(*model(mixture), a, b)))
        model.train(was_training)
        return {
            "val_pit_psnr": scores["pit_psnr"],
            "val_pit_ssim": scores["pit_ssim"],
            "val_baseline_psnr": self.baseline["pit_psnr"],
            "val_baseline_ssim": self.baseline["pit_ssim"],
        }

    def _batches(self, score):
        for start in range(0, len(self.data.val_pairs), EVAL_BATCH):
            pairs = self.data.val_pairs[start : start + EVAL_BATCH]
            yield score(*make_mixtures(self.data.val, pairs))

    @staticmethod
    def _mean(batches) -> dict[str, float]:
        collected: dict[str, list[torch.Tensor]] = {}
        for batch in batches:
            for key, values in batch.items():
                collected.setdefault(key, []).append(values.float())
        return {key: torch.cat(values).mean().item() for key, values in collected.items()}


def _make_ema(model: torch.nn.Module, decay: float):
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    # Parameters only: the averaged weights get BatchNorm statistics of their own (refresh_batch_norm).
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def refresh_batch_norm(model: torch.nn.Module, images: torch.Tensor, batch_size: int, seed: int) -> None:
    """Recompute the BatchNorm statistics of averaged weights on training pairs.

    Averaging the live model's running statistics along with its weights gives statistics
    that do not fit the averaged weights (measured: 0.3 dB lost on the validation pairs);
    SWA recomputes them the same way (`torch.optim.swa_utils.update_bn`, which does nothing
    for a model without BatchNorm; the batches are drawn only as it reads them).
    """
    from torch.optim.swa_utils import update_bn

    batches = PairSampler(images, "none", seed).epoch(BATCH_NORM_REFRESH_BATCHES * batch_size, batch_size)
    update_bn(batches, model)


def _state(config, data, epoch, metrics, evaluated, model, optimizer, ema, sampler, clock) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "input_shape": [data.channels, *data.image_size],
        "dataset": config.data.dataset,
        "epoch": epoch,
        "metrics": metrics,
        "model": _cpu(evaluated.state_dict()),
        "training_model": _cpu(model.state_dict()) if ema is not None else None,
        "ema": _cpu(ema.state_dict()) if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "sampler_generator": sampler.generator.get_state(),
        "elapsed_s": clock.elapsed,
    }


def _restore(state, model, optimizer, ema, sampler) -> tuple[int, float]:
    model.load_state_dict(state["training_model"] if state.get("training_model") else state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    sampler.generator.set_state(state["sampler_generator"])
    return state["epoch"], state.get("elapsed_s", 0.0)


def _cpu(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in state_dict.items()}
