"""The `model:` section of a trial: the family and its shape."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    family: str = "unet"              # ae | vae | unet (see runner.models.MODELS)
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # channels per level
    bottleneck: int = 512             # channels at the lowest resolution
    block: str = "plain"              # plain (two convs) | residual
    norm: str = "batch"               # batch | group | none
    output: str = "free"              # free (two sigmoid heads) | consistent (outputs average to the mixture)
    decoder: str = "separate"         # separate (one decoder per output) | shared (one decoder feeds both heads)
    tta: bool = False                 # inference: average the separations of the mixture and its mirror image (2x cost)
    unshuffle: int = 1                # unet: work at 1/N resolution on N*N times the channels (space-to-depth); 1 = off
    latent_dim: int = 256             # ae/vae: size of the dense latent
