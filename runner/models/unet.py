"""U-Net separator: one encoder whose skip connections feed two decoders."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import RunnerError
from runner.models.blocks import SeparationHeads, flip_ensemble, make_block

if TYPE_CHECKING:  # type only: runner.models.config checks names against this package's registries
    from runner.models.config import ModelConfig


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
        self.unshuffle = config.unshuffle
        self.size_multiple = self.unshuffle * 2 ** len(config.widths)
        self.dynamic_spatial = True
        # Space-to-depth: each N x N block of pixels becomes N*N channels of one position, a
        # lossless rearrangement that lets every level run at 1/N the resolution (cheaper on CPU).
        inner_channels = channels * self.unshuffle**2
        self.encoder = Encoder(inner_channels, config)
        self.decoder_1 = Decoder(config, use_skips=True)
        # A shared decoder feeds both heads: half the decoding cost, the heads still differ.
        self.decoder_2 = Decoder(config, use_skips=True) if config.decoder == "separate" else None
        self.heads = SeparationHeads(config.widths[0], inner_channels, config.output)
        self.tta = config.tta

    def forward(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flip_ensemble(self.separate, mixture) if self.tta else self.separate(mixture)

    def separate(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.unshuffle > 1:
            mixture = F.pixel_unshuffle(mixture, self.unshuffle)
        skips, bottom = self.encoder(mixture)
        features_1 = self.decoder_1(bottom, skips)
        features_2 = features_1 if self.decoder_2 is None else self.decoder_2(bottom, skips)
        outputs = self.heads(mixture, features_1, features_2)
        if self.unshuffle > 1:
            outputs = tuple(F.pixel_shuffle(output, self.unshuffle) for output in outputs)
        return outputs

    def forward_train(self, mixture: torch.Tensor):
        """Outputs plus the model's own loss term (none for a U-Net); never mirror-averaged."""
        return (*self.separate(mixture), None)


def build_unet(config: ModelConfig, channels: int, image_size: tuple[int, int]) -> UNetSeparator:
    model = UNetSeparator(config, channels)
    # `separate` pads any image to the multiple, but training takes its images as they are:
    # a side that does not halve evenly at every level cannot meet its skip connection.
    height, width = image_size
    if height % model.size_multiple or width % model.size_multiple:
        levels = f"{len(config.widths)} levels" + (f" after {config.unshuffle}x{config.unshuffle} space-to-depth"
                                                   if config.unshuffle > 1 else "")
        raise RunnerError(
            f"{levels} need images whose sides are multiples of {model.size_multiple}, "
            f"got {height}x{width}; use fewer widths or set data.image_size"
        )
    return model
