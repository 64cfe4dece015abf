"""Trial configuration: the three sections composed, and their complaints as one line.

A trial is fully described by a `TrialConfig`; checkpoints store `to_dict()` so a model
can be rebuilt without the YAML it came from. Each section is a pydantic dataclass in its
own stage (runner/data/config.py, runner/models/config.py, runner/training/config.py)
that declares its keys' types, ranges and choices; runner/sections.py builds it and turns
pydantic's first complaint into one line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from runner.data.config import DataConfig
from runner.errors import RunnerError
from runner.models import config as model_config
from runner.models.config import ModelConfig
from runner.sections import build, reject_unknown
from runner.training import config as train_config
from runner.training.config import TrainConfig

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# (section, key) -> the families that read it; every other key (all of data:) applies to every family.
FAMILY_ONLY = {
    (section, key): families
    for section, module in (("model", model_config), ("train", train_config))
    for key, families in module.FAMILY_ONLY.items()
}


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        reject_unknown(values, cls, "config")
        return cls(**{name: build_section(name, values.get(name, {})) for name in SECTIONS})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_section(name: str, values: dict[str, Any]):
    """SECTIONS[name] built from `values`, or a RunnerError of one line."""
    return build(SECTIONS[name], values, name)


def refuse_other_families(values: dict[str, dict[str, Any]], families: list[str]) -> None:
    """A key that none of `families` reads (kl_weight beside family: unet) is a mistake, not a no-op.

    With several families, a key applies to those that read it and the others ignore it.
    """
    for (section, key), readers in FAMILY_ONLY.items():
        if key in values.get(section, {}) and not set(families) & set(readers):
            homes = " and ".join(f"families.{name}.{section}" for name in readers)
            raise RunnerError(
                f"{section}.{key} applies only to {', '.join(readers)}, not {' or '.join(map(str, families))}; "
                f"remove it or set it under {homes}"
            )
