"""U-Net separator: one encoder whose skip connections feed two decoders."""

from __future__ import annotations

import torch
from torch import nn

from runner.config import ModelConfig
from runner.models.blocks import SeparationHeads, make_block


class Encoder(nn.Module):
    """Blocks at each width, halving the resolution after each; returns the skips and the bottom."""

    def __init__(self, in_channels: int, config: ModelConfig):
        super().__init__()
        channels = [in_channels, *config.widths]
        self.levels = nn.ModuleList(
            make_block(config.block, c_in, c_out, config.norm) for c_in, c_out in zip(channels, channels[1:])
        )
        self.pool = nn.MaxPool2d(2)
        self.bottom = make_block(config.block, config.widths[-1], config.bottleneck, config.norm)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
            x = self.pool(x)
        return skips, self.bottom(x)


class Decoder(nn.Module):
    """Upsamples from the bottleneck; with `skips`, concatenates the encoder's features at each level."""

    def __init__(self, config: ModelConfig, use_skips: bool):
        super().__init__()
        self.use_skips = use_skips
        channels = [config.bottleneck, *reversed(config.widths)]
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 2, stride=2) for c_in, c_out in zip(channels, channels[1:])
        )
        self.levels = nn.ModuleList(
            make_block(config.block, c * (2 if use_skips else 1), c, config.norm) for c in channels[1:]
        )

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        for i, (up, level) in enumerate(zip(self.ups, self.levels)):
            x = up(x)
            if self.use_skips:
                x = torch.cat([x, skips[-1 - i]], dim=1)
            x = level(x)
        return x


class UNetSeparator(nn.Module):
    def __init__(self, config: ModelConfig, channels: int):
        super().__init__()
        self.size_multiple = 2 ** len(config.widths)
        self.dynamic_spatial = True
        self.encoder = Encoder(channels, config)
        self.decoder_1 = Decoder(config, use_skips=True)
        self.decoder_2 = Decoder(config, use_skips=True)
        self.heads = SeparationHeads(config.widths[0], channels, config.output)

    def forward(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips, bottom = self.encoder(mixture)
        return self.heads(mixture, self.decoder_1(bottom, skips), self.decoder_2(bottom, skips))

    def forward_train(self, mixture: torch.Tensor):
        """Outputs plus the model's own loss term (none for a U-Net)."""
        return (*self(mixture), None)


def build_unet(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> UNetSeparator:
    return UNetSeparator(config, channels)
