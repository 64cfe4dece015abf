"""Learning-rate schedules by name: `train.schedule` picks one of `SCHEDULES`.

A schedule maps progress in [0, 1] of the run to a multiplier of the peak learning rate.
Hand-written rather than torch's schedulers because progress may be measured in wall time
(a `minutes` budget), which torch's step-counting schedulers cannot follow.
"""

from __future__ import annotations

import math

ONECYCLE_WARMUP = 0.1  # share of the run spent warming up
ONECYCLE_START = 0.04  # multiplier at the start of the warm-up


def constant(progress: float) -> float:
    return 1.0


def cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def onecycle(progress: float) -> float:
    if progress < ONECYCLE_WARMUP:
        return ONECYCLE_START + (1 - ONECYCLE_START) * progress / ONECYCLE_WARMUP
    return cosine((progress - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP))


SCHEDULES = {"constant": constant, "cosine": cosine, "onecycle": onecycle}


def lr_factor(schedule: str, progress: float) -> float:
    """Learning-rate multiplier of `schedule` at `progress` (clamped to [0, 1])."""
    return SCHEDULES[schedule](min(max(progress, 0.0), 1.0))
