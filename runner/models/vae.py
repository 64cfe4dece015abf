"""Variational autoencoder separator: the autoencoder with a Gaussian latent and a KL term."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from runner.models.ae import AutoencoderSeparator

if TYPE_CHECKING:  # type only: runner.models.config checks names against this package's registries
    from runner.models.config import ModelConfig


class VAESeparator(AutoencoderSeparator):
    """Encodes to a mean and log-variance; trains on a reparameterised sample, infers from the mean."""

    def latent_layer(self, flat: int, latent_dim: int) -> nn.Module:
        return nn.Linear(flat, 2 * latent_dim)

    def encode_distribution(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, bottom = self.encoder(mixture)
        mean, log_variance = self.to_latent(bottom.flatten(1)).chunk(2, dim=1)
        return mean, log_variance.clamp(-30.0, 20.0)

    def encode(self, mixture: torch.Tensor) -> torch.Tensor:
        return self.encode_distribution(mixture)[0]

    def forward_train(self, mixture: torch.Tensor):
        """Outputs from a reparameterised sample, plus the KL divergence to N(0, I) (mean per image)."""
        mean, log_variance = self.encode_distribution(mixture)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        kl = -0.5 * torch.sum(1 + log_variance - mean.pow(2) - log_variance.exp(), dim=1).mean()
        return (*self.decode(mixture, latent), kl)


def build_vae(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> VAESeparator:
    return VAESeparator(config, channels, image_size)
