"""The `data:` section of a trial: which images, how many, and how they are augmented.

A pydantic dataclass (runner/sections.py): types and ranges are checked when the section is
built and on every assignment (strict: no bool for an int, no text for a number), and the
choices are the registries that use them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from runner.data.sampler import AUGMENTS
from runner.data.sources import DATASETS
from runner.sections import SECTION_CONFIG

Dataset = Literal[DATASETS]
Augment = Literal[AUGMENTS]


def _grey_or_rgb(channels: int) -> int:
    # Not Literal[1, 3]: a Literal compares with ==, so it would take `true` for 1.
    if channels not in (1, 3):
        raise ValueError("must be 1 (grey) or 3 (RGB), or unset to keep the dataset's own")
    return channels


@dataclass(config=SECTION_CONFIG)
class DataConfig:
    dataset: Dataset = "cifar10"      # cifar10 | fashion-mnist | mnist | folder
    channels: Annotated[int, AfterValidator(_grey_or_rgb)] | None = None  # None keeps the dataset's own (3 for cifar10, 1 for mnist)
    image_size: PositiveInt | None = None  # None keeps the native size (folder: 64)
    per_class: PositiveInt | None = None   # keep only the first N training images of each class
    val_images: PositiveInt = 500     # held out of the training split for validation
    val_pairs: PositiveInt = 500      # fixed, seeded validation pairs, the same for every trial
    augment: Augment = "flip"         # none | flip (both sources together) | sources (each on its own)
    shift: NonNegativeInt = 0         # training only: translate each source on its own by up to N pixels (reflected edges)

