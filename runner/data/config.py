"""The `data:` section of a trial: which images, how many, and how they are augmented."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    dataset: str = "cifar10"          # cifar10 | fashion-mnist | mnist | folder
    channels: int | None = None       # None keeps the dataset's own (3 for cifar10, 1 for mnist)
    image_size: int | None = None     # None keeps the native size (folder: 64)
    per_class: int | None = None      # keep only the first N training images of each class
    val_images: int = 500             # held out of the training split for validation
    val_pairs: int = 500              # fixed, seeded validation pairs, the same for every trial
    augment: str = "flip"             # none | flip (both sources together) | sources (each on its own)
    shift: int = 0                    # training only: translate each source on its own by up to N pixels (reflected edges)
