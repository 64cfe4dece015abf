"""The `model:` section of a trial: the family and its shape.

A pydantic dataclass (runner/sections.py): types and ranges are checked when the section is
built and on every assignment, and each
name is one of the registry that builds it (a new family, norm or block is accepted here
as soon as it is registered).
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field, PositiveInt
from pydantic.dataclasses import dataclass

from runner.models import MODELS
from runner.models.blocks import BLOCKS, NORMS, OUTPUTS
from runner.sections import SECTION_CONFIG

Family = Literal[tuple(MODELS)]
Block = Literal[tuple(BLOCKS)]
Norm = Literal[tuple(NORMS)]
Output = Literal[OUTPUTS]
Widths = Annotated[list[PositiveInt], Field(min_length=1)]


@dataclass(config=SECTION_CONFIG)
class ModelConfig:
    family: Family = "unet"           # ae | vae | unet (see runner.models.MODELS)
    widths: Widths = field(default_factory=lambda: [32, 64, 128, 256])  # channels per level
    bottleneck: PositiveInt = 512     # channels at the lowest resolution
    block: Block = "plain"            # plain (two convs) | residual
    norm: Norm = "batch"              # batch | group | none
    output: Output = "free"           # free (two sigmoid heads) | consistent (outputs average to the mixture)
    decoder: Literal["separate", "shared"] = "separate"  # one decoder per output | one decoder feeds both heads
    tta: bool = False                 # inference: average the separations of the mixture and its mirror image (2x cost)
    unshuffle: PositiveInt = 1        # unet: work at 1/N resolution on N*N times the channels (space-to-depth); 1 = off
    latent_dim: PositiveInt = 256     # ae/vae: size of the dense latent


# Keys only some families read: a search space that sets one for another family is refused.
FAMILY_ONLY = {"unshuffle": ("unet",), "latent_dim": ("ae", "vae")}
