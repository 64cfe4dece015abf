"""The model registry: family name -> builder(config, channels, image_size) -> nn.Module.

Every model maps a mixture [N, C, H, W] to two images of the same shape, and carries
`size_multiple` (its sides must be multiples of it) and `dynamic_spatial` (whether it
takes sizes other than the training size). `forward_train` also returns the model's own
loss term (the VAE's KL divergence) or None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from runner.errors import RunnerError
from runner.models.ae import build_ae
from runner.models.unet import build_unet
from runner.models.vae import build_vae

if TYPE_CHECKING:  # type only: runner.models.config checks names against this package's registries
    from runner.models.config import ModelConfig

MODELS = {"ae": build_ae, "vae": build_vae, "unet": build_unet}


def build_model(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> nn.Module:
    if config.family not in MODELS:
        raise RunnerError(f"unknown model family '{config.family}'; valid: {', '.join(MODELS)}")
    return MODELS[config.family](config, channels, tuple(image_size))
