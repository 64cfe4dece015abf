"""The `train:` section of a trial: optimiser, loss, schedule, budget and precision.

A pydantic dataclass (runner/sections.py): types and ranges are checked when the section is
built and on every assignment (strict: no bool for an int, no text for a number), and the
loss and schedule names are those of the registries that compute them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (AfterValidator, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                      PositiveInt, model_validator)
from pydantic.dataclasses import dataclass

from runner.sections import SECTION_CONFIG
from runner.training.losses import RECONSTRUCTION
from runner.training.schedules import SCHEDULES

DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")  # what train.device may say
Recon = Literal[tuple(RECONSTRUCTION)]
Schedule = Literal[tuple(SCHEDULES)]


# Above this no run learns: the tiny U-Net of the tests ends 3 epochs at 11.9 dB with lr 1 and
# stays at 5.4 dB (every output saturated) with lr 10 and 1e6; 1e38 overflows AdamW's step.
MAX_LR = 1.0


def _sane_lr(lr: float) -> float:
    if lr > MAX_LR:
        raise ValueError(f"must be at most {MAX_LR:g} (AdamW moves each weight by up to about lr a step; "
                         "usual rates are 1e-4 to 1e-2)")
    return lr


def _device_name(device: str) -> str:
    if not DEVICE_NAME.fullmatch(device):
        raise ValueError("must be cpu, cuda or cuda:N (N a GPU index)")
    return device


@dataclass(config=SECTION_CONFIG)
class TrainConfig:
    lr: Annotated[PositiveFloat, AfterValidator(_sane_lr)] = 1e-3  # peak learning rate (AdamW), at most MAX_LR
    batch_size: PositiveInt = 64
    epochs: PositiveInt | None = 10   # upper bound; None: until the minutes budget ends (needs minutes)
    epoch_pairs: PositiveInt | None = None  # pairs per epoch; None: one per training image
    loss: Literal["pit", "fixed"] = "pit"   # pit (permutation-invariant) | fixed (head 1 <- a; reproduces the collapse)
    recon: Recon = "mse"              # mse | l1 | psnr (mean of per-image PSNRs, the metric itself)
    kl_weight: NonNegativeFloat = 1e-3  # vae only: weight of the KL term
    schedule: Schedule = "constant"   # constant | cosine | onecycle
    weight_decay: NonNegativeFloat = 0.0  # AdamW decoupled weight decay
    ema: Annotated[float, Field(ge=0, lt=1)] = 0.0  # decay of an exponential moving average of the weights; 0 = off
    seed: NonNegativeInt = 0
    minutes: PositiveFloat | None = None  # wall-clock budget; ends with a final evaluation and checkpoint
    threads: PositiveInt | None = None    # torch CPU threads; None: one per CPU of a Ray trial's share, else torch's default
    compile: bool = False             # torch.compile the model (GPU runs mostly)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | bf16 (autocast on CPU too) | fp32
    channels_last: bool | None = None  # channels-last memory format; None: on GPU only
    device: Annotated[str, AfterValidator(_device_name)] | None = None  # cpu | cuda | cuda:N; None: a GPU when the run was given one

    @model_validator(mode="after")
    def _has_an_end(self) -> TrainConfig:
        if self.epochs is None and self.minutes is None:
            raise ValueError(
                "train.epochs is null (train until the time budget ends) but train.minutes is not set; "
                "set train.minutes or give train.epochs a number"
            )
        return self

    @model_validator(mode="after")
    def _decay_keeps_the_weights(self) -> TrainConfig:
        if self.lr * self.weight_decay >= 1:  # AdamW scales every weight by 1 - lr * weight_decay a step
            raise ValueError(
                f"train.lr x train.weight_decay is {self.lr * self.weight_decay:g}, and AdamW scales every weight by "
                "1 minus that each step, so it must stay below 1; lower train.weight_decay (usual: 0 to 0.1)"
            )
        return self


# Keys only some families read: a search space that sets one for another family is refused.
FAMILY_ONLY = {"kl_weight": ("vae",)}
