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

from runner.data.config import DataConfig
from runner.errors import RunnerError
from runner.models.config import ModelConfig
from runner.training.config import TrainConfig


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
