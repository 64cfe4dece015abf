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


class PointLatent(nn.Module):
    """The autoencoder's latent: the encoder's vector as it is, with no loss term of its own."""

    width = 1  # encoder outputs per latent dimension

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded

    def sample(self, encoded: torch.Tensor) -> tuple[torch.Tensor, None]:
        return encoded, None


class AutoencoderSeparator(nn.Module):
    """Everything the decoders see passes through a `latent_dim` vector.

    `latent` turns the encoder's output into that vector: a `PointLatent` (the plain
    autoencoder) unless given another, such as the VAE's Gaussian one. It holds no
    parameters, so both families keep the same state-dict keys (`to_latent` is sized by
    `latent.width`). The dense latent ties the model to its training size:
    `dynamic_spatial` is False.
    """

    def __init__(self, config: ModelConfig, channels: int, image_size: tuple[int, int], latent: nn.Module | None = None):
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
        self.latent = PointLatent() if latent is None else latent
        self.to_latent = nn.Linear(flat, self.latent.width * config.latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(config.latent_dim, flat), nn.ReLU(inplace=True))
        self.decoder_1 = Decoder(config, use_skips=False)
        self.decoder_2 = Decoder(config, use_skips=False) if config.decoder == "separate" else None
        self.heads = SeparationHeads(config.widths[0], channels, config.output)
        self.tta = config.tta

    def encoder_output(self, mixture: torch.Tensor) -> torch.Tensor:
        _, bottom = self.encoder(mixture)
        return self.to_latent(bottom.flatten(1))

    def encode(self, mixture: torch.Tensor) -> torch.Tensor:
        """The latent used for inference (the VAE's mean)."""
        return self.latent(self.encoder_output(mixture))

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
        """Outputs from the latent's training sample, plus its own loss term (the VAE's KL) or None."""
        latent, model_term = self.latent.sample(self.encoder_output(mixture))
        return (*self.decode(mixture, latent), model_term)


def build_ae(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> AutoencoderSeparator:
    return AutoencoderSeparator(config, channels, image_size)
