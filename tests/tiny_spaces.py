"""The tiny trial that the process-level tests (faults, resume, node loss, CLI errors) search:
a two-level U-Net on 256 CIFAR-10 pairs an epoch, 100 validation pairs. Each test adds its
own header and `tune:` section."""

from __future__ import annotations

SEARCHED_LR = "{loguniform: [1.0e-3, 5.0e-3]}"


def tiny_trial(*, lr: str = SEARCHED_LR, val_images: int | str = 100, epoch_pairs: int = 256) -> str:
    """The data, model and train sections, as YAML text; `lr` and `val_images` may be distributions."""
    return f"""\
data:
  dataset: cifar10
  val_images: {val_images}
  val_pairs: 100
model:
  family: unet
  widths: [4, 8]
  bottleneck: 16
train:
  lr: {lr}
  batch_size: 32
  epoch_pairs: {epoch_pairs}
"""
