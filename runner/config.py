"""Trial configuration: plain dataclasses with a strict `from_dict`.

A trial is fully described by a `TrialConfig`; checkpoints store `to_dict()` so a model
can be rebuilt without the YAML it came from. An unknown key is an error that names it
and lists the valid ones, so a typo in a search space never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from runner.errors import RunnerError


@dataclass
class DataConfig:
    dataset: str = "cifar10"          # cifar10 | fashion-mnist | mnist | folder
    channels: int | None = None       # None keeps the dataset's own (3 for cifar10, 1 for mnist)
    image_size: int | None = None     # None keeps the native size (folder: 64)
    per_class: int | None = None      # keep only the first N training images of each class
    val_images: int = 500             # held out of the training split for validation
    val_pairs: int = 500              # fixed, seeded validation pairs, the same for every trial
    augment: str = "flip"             # none | flip (both sources together) | sources (each on its own)
    shift: int = 0                    # training only: translate each source on its own by up to N pixels (reflected edges)


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


@dataclass
class TrainConfig:
    lr: float = 1e-3                  # peak learning rate (Adam)
    batch_size: int = 64
    epochs: int = 10                  # upper bound; a wall-clock budget may end training sooner
    epoch_pairs: int | None = None    # pairs per epoch; None: one per training image
    loss: str = "pit"                 # pit (permutation-invariant) | fixed (head 1 <- a; reproduces the collapse)
    recon: str = "mse"                # mse | l1 | psnr (mean of per-image PSNRs, the metric itself)
    kl_weight: float = 1e-3           # vae only: weight of the KL term
    schedule: str = "constant"        # constant | cosine | onecycle
    weight_decay: float = 0.0         # AdamW decoupled weight decay
    ema: float = 0.0                  # decay of an exponential moving average of the weights; 0 = off
    seed: int = 0
    minutes: float | None = None      # wall-clock budget; ends with a final evaluation and checkpoint
    threads: int | None = None        # torch CPU threads; None: torch's default
    compile: bool = False             # torch.compile the model (GPU runs mostly)
    precision: str = "auto"           # auto (bf16 autocast on GPU, fp32 on CPU) | bf16 (autocast on CPU too) | fp32
    channels_last: bool | None = None # channels-last memory format; None: on GPU only


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        _reject_unknown(values, cls, "config")
        return cls(
            data=_section(DataConfig, values.get("data", {}), "data"),
            model=_section(ModelConfig, values.get("model", {}), "model"),
            train=_section(TrainConfig, values.get("train", {}), "train"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

CHOICES = {
    ("model", "family"): ("ae", "vae", "unet"),
    ("data", "augment"): ("none", "flip", "sources"),
    ("model", "block"): ("plain", "residual"),
    ("model", "norm"): ("batch", "group", "none"),
    ("model", "output"): ("free", "consistent"),
    ("model", "decoder"): ("separate", "shared"),
    ("train", "precision"): ("auto", "bf16", "fp32"),
    ("train", "loss"): ("pit", "fixed"),
    ("train", "recon"): ("mse", "l1", "psnr"),
    ("train", "schedule"): ("constant", "cosine", "onecycle"),
}


def field_names(section_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(section_class)]


def _reject_unknown(values: Any, section_class: type, where: str) -> None:
    if not isinstance(values, dict):
        raise RunnerError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    known = field_names(section_class)
    for key in values:
        if key not in known:
            raise RunnerError(f"unknown key '{key}' in {where}; valid keys: {', '.join(known)}")


def _section(section_class: type, values: dict[str, Any], where: str):
    _reject_unknown(values, section_class, where)
    for (section, key), allowed in CHOICES.items():
        if section == where and key in values and values[key] not in allowed:
            raise RunnerError(
                f"{where}.{key} is '{values[key]}'; valid values: {', '.join(allowed)}"
            )
    return section_class(**values)
