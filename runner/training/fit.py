"""Training one configuration: `fit(config, report)` -> final metrics.

`fit` knows nothing about Ray: it calls `report(metrics, state)` after every epoch with
the metrics and, when a checkpoint is due, a `TrainingState` (else None), and the caller
decides where that goes (a Ray Tune checkpoint, a local directory, a test's list). It
runs the same in a plain process, in a test and in a trial. `fit` is its steps in order:
plan the device, build the run, restore a checkpoint, then for each epoch train,
evaluate and report.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from runner.data.sampler import PairData, PairSampler, epoch_seed, load_pair_data, make_mixtures
from runner.errors import TrialDiverged
from runner.models import build_model
from runner.models.cost import model_cost
from runner.results import METRIC
from runner.training.checkpoint import TrainingState, ema_state, to_cpu
from runner.training.device import DevicePlan, resolve
from runner.training.losses import total_loss
from runner.training.metrics import baseline_scores, separation_scores
from runner.training.schedules import lr_factor

if TYPE_CHECKING:  # the config is a later stage: only its type is used here
    from runner.config import TrialConfig

Report = Callable[[dict[str, Any], TrainingState | None], None]
EVAL_BATCH = 250
BATCH_NORM_REFRESH_BATCHES = 16   # training batches that set the averaged weights' BatchNorm statistics


def fit(
    config: TrialConfig,
    report: Report | None = None,
    *,
    data_dir=None,
    resume: TrainingState | None = None,
    data: PairData | None = None,
    gpu_ids: list[int] | None = None,
    cpus: float | None = None,
    started: float | None = None,
    checkpoint_every: int = 1,
) -> dict[str, Any]:
    """Train `config`, reporting after each epoch; resume from a checkpoint state if given.

    `gpu_ids` and `cpus` are what Ray gave the trial (None: not under Ray, see device.py);
    `data` is used instead of loading the dataset, moved to the run's device. `started`
    (a `time.perf_counter()`; default: now) is when the run began, for `startup_seconds`.
    The report gets a `TrainingState` every `checkpoint_every` epochs, and always after an
    epoch that improved on the best score so far and after the last; None after the others
    (building one copies every weight, the optimiser's state and the moving average).
    """
    started = time.perf_counter() if started is None else started
    plan = resolve(config.train, gpu_ids, cpus=cpus)
    if plan.fallback:
        warnings.warn(plan.fallback, stacklevel=2)  # and the metrics record the precision used
    run = build(config, plan, data_dir, data)
    if resume is not None:
        restore(run, resume)
    run.clock = Clock(config.train.minutes, already_spent=resume.elapsed_s if resume else 0.0)
    # The seconds from the start to the first step: data, model, restore (a trial's start-up cost).
    startup_seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {}
    best = resume.metrics[METRIC] if resume else -math.inf
    for epoch in run.epochs():
        train_loss, steps, train_seconds = train_epoch(run, epoch)
        evaluated = time.perf_counter()
        scores = evaluate(run)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "train_pairs": steps * config.train.batch_size,
                   **scores, "device": plan.device, "precision": plan.precision, **run.cost,
                   "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - evaluated,
                   "startup_seconds": startup_seconds}
        last = epoch + 1 == config.train.epochs or run.clock.out_of_time
        due = last or scores[METRIC] > best or (epoch + 1) % checkpoint_every == 0
        best = max(best, scores[METRIC])
        if report is not None:
            report(metrics, training_state(run, metrics) if due else None)
        if run.clock.out_of_time:
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


@dataclass
class Run:
    """Everything one training run holds between its steps."""

    config: TrialConfig
    plan: DevicePlan
    data: PairData
    model: torch.nn.Module
    forward_train: Callable
    optimizer: torch.optim.Optimizer
    ema: torch.optim.swa_utils.AveragedModel | None
    sampler: PairSampler
    evaluator: Evaluator
    steps_per_epoch: int
    cost: dict[str, int]            # params, macs, onnx_bytes_estimate: reported with every epoch
    start_epoch: int = 0
    clock: Clock | None = None

    @property
    def evaluated(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def epochs(self) -> Iterable[int]:
        """Epoch numbers from the start; without train.epochs the clock alone ends the run."""
        epochs = self.config.train.epochs
        if epochs is None:
            return itertools.count(self.start_epoch)
        return range(self.start_epoch, epochs)

    def progress(self, epoch: int, step: int) -> float:
        """How far through its budget the run is, in [0, 1]: by epochs or by the clock, whichever is further."""
        epochs = self.config.train.epochs
        by_steps = (epoch * self.steps_per_epoch + step) / (epochs * self.steps_per_epoch) if epochs else 0.0
        return max(by_steps, self.clock.fraction)


def build(config: TrialConfig, plan: DevicePlan, data_dir, data: PairData | None) -> Run:
    """Seeded model, optimiser, moving average, sampler and evaluator, all on the plan's device."""
    train = config.train
    torch.manual_seed(train.seed)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    data = data.to(plan.device) if data is not None else load_pair_data(config.data, data_dir, plan.device)
    model = build_model(config.model, data.channels, data.image_size)
    cost = model_cost(model, (data.channels, *data.image_size))
    model = model.to(plan.device, memory_format=plan.memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    return Run(
        config=config, plan=plan, data=data, model=model,
        forward_train=torch.compile(model.forward_train) if plan.compile else model.forward_train,
        optimizer=optimizer, ema=_make_ema(model, train.ema),
        sampler=PairSampler(data.train, config.data.augment, train.seed, config.data.shift),
        evaluator=Evaluator(data),
        steps_per_epoch=max(1, (train.epoch_pairs or len(data.train)) // train.batch_size),
        cost=cost,
    )


def restore(run: Run, state: TrainingState) -> None:
    """Continue from `state`, whatever device wrote it (its tensors load onto the run's device)."""
    run.model.load_state_dict(state.training_model or state.model)
    # Optimizer.load_state_dict moves each state tensor to its parameter's device.
    run.optimizer.load_state_dict(state.optimizer)
    if run.ema is not None and state.ema:
        run.ema.load_state_dict(ema_state(state))
    run.start_epoch = state.epoch


def train_epoch(run: Run, epoch: int) -> tuple[float, int, float]:
    """One epoch of fresh pairs: (mean loss, steps, seconds). The clock may end it early."""
    train = run.config.train
    # The model's own randomness (the VAE's sampling) is re-seeded too, so a resumed epoch runs as it would have.
    torch.manual_seed(epoch_seed(train.seed, epoch))
    run.model.train()
    start = time.perf_counter()
    loss_sum, steps = torch.zeros((), device=run.plan.device), 0
    for mixture, source_a, source_b in run.sampler.epoch(epoch, run.steps_per_epoch * train.batch_size, train.batch_size):
        for group in run.optimizer.param_groups:
            group["lr"] = train.lr * lr_factor(train.schedule, run.progress(epoch, steps))
        loss_sum += train_step(run, mixture, source_a, source_b)
        steps += 1
        if run.clock.out_of_time:
            break
    train_loss = loss_sum.item() / max(steps, 1)  # waits for the device, so the time below is complete
    seconds = time.perf_counter() - start
    if not math.isfinite(train_loss):
        fix = "lower train.lr" + (" or train.kl_weight" if run.config.model.family == "vae" else "")
        raise TrialDiverged(f"loss became {train_loss} in epoch {epoch + 1}; {fix}")
    return train_loss, steps, seconds


def train_step(run: Run, mixture: torch.Tensor, source_a: torch.Tensor, source_b: torch.Tensor) -> torch.Tensor:
    train, dtype = run.config.train, run.plan.autocast_dtype
    with torch.autocast(run.plan.torch_device.type, dtype=dtype, enabled=dtype is not None):
        outputs = run.forward_train(mixture)
        loss = total_loss(
            outputs, source_a, source_b,
            recon=train.recon, permutation_invariant=train.loss == "pit", kl_weight=train.kl_weight,
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return loss.detach()


def evaluate(run: Run) -> dict[str, float]:
    """Validation scores of the evaluated weights (the moving average's, with BatchNorm statistics of their own)."""
    if run.ema is not None:
        refresh_batch_norm(run.evaluated, run.data.train, run.config.train.batch_size, run.config.train.seed)
    return run.evaluator(run.evaluated)


def training_state(run: Run, metrics: dict[str, Any]) -> TrainingState:
    """The checkpoint after an epoch, every tensor copied to the CPU."""
    return TrainingState(
        config=run.config.to_dict(),
        input_shape=[run.data.channels, *run.data.image_size],
        dataset=run.config.data.dataset,
        epoch=metrics["epoch"],
        metrics=metrics,
        model=to_cpu(run.evaluated.state_dict()),
        training_model=to_cpu(run.model.state_dict()) if run.ema is not None else None,
        # The average's weights are `model`; of its own state only the count is stored.
        ema={"n_averaged": to_cpu(run.ema.n_averaged)} if run.ema is not None else None,
        optimizer=to_cpu(run.optimizer.state_dict()),
        elapsed_s=run.clock.elapsed,
    )


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
            METRIC: scores["pit_psnr"],
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

    batches = PairSampler(images, "none", seed).epoch(0, BATCH_NORM_REFRESH_BATCHES * batch_size, batch_size)
    update_bn(batches, model)
