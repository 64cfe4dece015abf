"""Autoencoder separator: encoder, dense bottleneck, two decoders, no skip connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from runner.errors import RunnerError
from runner.models.blocks import SeparationHeads, flip_ensemble
from runner.models.unet import Decoder, Encoder

if TYPE_CHECKING:  # type only: runner.models.config checks names against this package's registries
    from runner.models.config import ModelConfig


class AutoencoderSeparator(nn.Module):
    """Everything the decoders see passes through a `latent_dim` vector.

    The dense latent ties the model to its training size: `dynamic_spatial` is False.
    """

    def __init__(self, config: ModelConfig, channels: int, image_size: tuple[int, int]):
        super().__init__()
        self.size_multiple = 2 ** len(config.widths)
        self.dynamic_spatial = False
        height, width = image_size
        if height % self.size_multiple or width % self.size_multiple:
            raise RunnerError(
                f"{len(config.widths)} levels need images whose sides are multiples of {self.size_multiple}, "
                f"got {height}x{width}; use fewer widths or set data.image_size"
            )
        self.bottom_shape = (config.bottleneck, height // self.size_multiple, width // self.size_multiple)
        flat = config.bottleneck * self.bottom_shape[1] * self.bottom_shape[2]
        self.encoder = Encoder(channels, config)
        self.to_latent = self.latent_layer(flat, config.latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(config.latent_dim, flat), nn.ReLU(inplace=True))
        self.decoder_1 = Decoder(config, use_skips=False)
        self.decoder_2 = Decoder(config, use_skips=False) if config.decoder == "separate" else None
        self.heads = SeparationHeads(config.widths[0], channels, config.output)
        self.tta = config.tta

    def latent_layer(self, flat: int, latent_dim: int) -> nn.Module:
        return nn.Linear(flat, latent_dim)

    def encode(self, mixture: torch.Tensor) -> torch.Tensor:
        _, bottom = self.encoder(mixture)
        return self.to_latent(bottom.flatten(1))

    def decode(self, mixture: torch.Tensor, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bottom = self.from_latent(latent).view(-1, *self.bottom_shape)
        features_1 = self.decoder_1(bottom)
        features_2 = features_1 if self.decoder_2 is None else self.decoder_2(bottom)
        return self.heads(mixture, features_1, features_2)

    def forward(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flip_ensemble(self.separate, mixture) if self.tta else self.separate(mixture)

    def separate(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(mixture, self.encode(mixture))

    def forward_train(self, mixture: torch.Tensor):
        return (*self.separate(mixture), None)


def build_ae(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> AutoencoderSeparator:
    return AutoencoderSeparator(config, channels, image_size)
