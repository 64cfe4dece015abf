"""Variational autoencoder separator: the autoencoder with a Gaussian latent and a KL term."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from runner.models.ae import AutoencoderSeparator

if TYPE_CHECKING:  # type only: runner.models.config checks names against this package's registries
    from runner.models.config import ModelConfig


class GaussianLatent(nn.Module):
    """A mean and a log-variance per latent dimension: trains on a reparameterised sample,
    infers from the mean. No parameters of its own (the autoencoder's `to_latent` makes both)."""

    width = 2  # encoder outputs per latent dimension: mean, log-variance

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded.chunk(2, dim=1)[0]

    def sample(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample and the KL divergence to N(0, I) (mean per image)."""
        mean, log_variance = encoded.chunk(2, dim=1)
        log_variance = log_variance.clamp(-30.0, 20.0)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        kl = -0.5 * torch.sum(1 + log_variance - mean.pow(2) - log_variance.exp(), dim=1).mean()
        return latent, kl


def build_vae(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> AutoencoderSeparator:
    return AutoencoderSeparator(config, channels, image_size, latent=GaussianLatent())
