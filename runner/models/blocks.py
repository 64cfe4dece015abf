"""Building blocks shared by every family: conv blocks, down/up steps, output heads."""

from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import RunnerError


NORMS = {
    "batch": nn.BatchNorm2d,
    "group": lambda channels: nn.GroupNorm(math.gcd(8, channels), channels),
    "none": lambda channels: nn.Identity(),
}


def _check_name(registry, name: str, what: str) -> None:
    """One line naming the valid names for a name the registry lacks (never a silent default)."""
    if name not in registry:
        raise RunnerError(f"unknown {what} '{name}'; valid: {', '.join(registry)}")


def norm_layer(kind: str, channels: int) -> nn.Module:
    _check_name(NORMS, kind, "norm")
    return NORMS[kind](channels)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by a norm and ReLU (the classic U-Net block)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none"),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=norm == "none"),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    """Pre-activation residual block (norm, SiLU, conv, twice) with a 1x1 projection when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            norm_layer(norm, in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            norm_layer(norm, out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


BLOCKS = {"plain": ConvBlock, "residual": ResidualBlock}


def make_block(kind: str, in_channels: int, out_channels: int, norm: str) -> nn.Module:
    _check_name(BLOCKS, kind, "block")
    return BLOCKS[kind](in_channels, out_channels, norm)


OUTPUTS = ("free", "consistent")  # what SeparationHeads makes of the two decoders' features


class SeparationHeads(nn.Module):
    """Turns two decoder outputs into two images.

    `free`: each head is a sigmoid image. `consistent`: the heads only decide the
    half-difference d = (h1 - h2) / 2 and the outputs are m + d and m - d, so they always
    average to the mixture exactly (mixture consistency, Wisdom et al. 2019).
    """

    def __init__(self, in_channels: int, image_channels: int, output: str):
        super().__init__()
        _check_name(OUTPUTS, output, "output")
        self.output = output
        self.head_1 = nn.Conv2d(in_channels, image_channels, 1)
        self.head_2 = nn.Conv2d(in_channels, image_channels, 1)
        if output == "consistent":
            # Near-zero heads start an untrained model at the Average baseline. Not exactly zero:
            # with both outputs equal, the two assignments of the PIT loss tie and their
            # gradients cancel, a saddle that training would never leave.
            for head in (self.head_1, self.head_2):
                head.weight.data.mul_(0.01)
                nn.init.zeros_(head.bias)

    def forward(self, mixture, features_1, features_2) -> tuple[torch.Tensor, torch.Tensor]:
        h1, h2 = self.head_1(features_1), self.head_2(features_2)
        if self.output == "consistent":
            half_difference = (h1 - h2) / 2
            return mixture + half_difference, mixture - half_difference
        return torch.sigmoid(h1), torch.sigmoid(h2)


def flip_ensemble(separate, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of `separate` on the mixture and on its mirror image (mirrored back).

    Which output holds which source is arbitrary (the loss is permutation-invariant), so
    each mirrored pair is matched to the direct pair, per image, by the assignment with the
    smaller difference before the two are averaged. Means of mixture-consistent pairs stay
    consistent. One batched pass of twice the size; traceable for ONNX.
    """
    count = mixture.shape[0]
    output_1, output_2 = separate(torch.cat([mixture, mixture.flip(-1)]))
    direct_1, direct_2 = output_1[:count], output_2[:count]
    mirror_1, mirror_2 = output_1[count:].flip(-1), output_2[count:].flip(-1)
    same = ((direct_1 - mirror_1).pow(2) + (direct_2 - mirror_2).pow(2)).flatten(1).sum(1)
    crossed = ((direct_1 - mirror_2).pow(2) + (direct_2 - mirror_1).pow(2)).flatten(1).sum(1)
    swap = (crossed < same)[:, None, None, None]
    mirror_1, mirror_2 = torch.where(swap, mirror_2, mirror_1), torch.where(swap, mirror_1, mirror_2)
    return (direct_1 + mirror_1) / 2, (direct_2 + mirror_2) / 2
