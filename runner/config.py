"""Trial configuration: the three sections composed, and their complaints as one line.

A trial is fully described by a `TrialConfig`; checkpoints store `to_dict()` so a model
can be rebuilt without the YAML it came from. Each section is a pydantic dataclass in its
own stage (runner/data/config.py, runner/models/config.py, runner/training/config.py)
that declares its keys' types, ranges and choices; pydantic checks them as the section is
built. pydantic rather than hand-written checks: the rule sits on the key's own line
(`batch_size: PositiveInt = 64`), strict mode refuses `true` for an integer and text for
a number, and one function here turns its first complaint into a line such as
`train.batch_size must be greater than 0, got 0`. An unknown key names the valid ones, so
a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from runner.data.config import DataConfig
from runner.errors import RunnerError
from runner.models import config as model_config
from runner.models.config import ModelConfig
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
        _reject_unknown(values, cls, "config")
        return cls(**{name: build_section(name, values.get(name, {})) for name in SECTIONS})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_names(section_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(section_class)]


class ConfigError(RunnerError):
    """A section's complaint, with the key it is about (`train.lr`; None for a check across keys),
    so a caller can say where that key's value came from (a file, or an override)."""

    def __init__(self, message: str, key: str | None):
        super().__init__(message)
        self.key = key


def build_section(name: str, values: dict[str, Any]):
    """SECTIONS[name] built from `values`, or a ConfigError of one line."""
    _reject_unknown(values, SECTIONS[name], name)
    try:
        return SECTIONS[name](**values)
    except ValidationError as error:
        loc = error.errors()[0]["loc"]
        raise ConfigError(one_line(error, name), f"{name}.{loc[0]}" if loc else None) from None


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


def one_line(error: ValidationError, where: str) -> str:
    """pydantic's first complaint as `<where>.<key> <rule>, got <value>`."""
    problem = error.errors()[0]
    key = where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"])
    given = problem["input"]
    if problem["type"] == "literal_error":  # "'ae', 'vae' or 'unet'" -> ae, vae, unet
        valid = ", ".join(name.strip("'") for name in re.split(r", | or ", problem["ctx"]["expected"]))
        return f"{key} is {given!r}; valid values: {valid}"
    if not problem["loc"]:  # a check across keys says which keys in its own words
        return str(problem["ctx"]["error"])
    if problem["type"] == "too_short":
        return f"{key} must have at least {problem['ctx']['min_length']} item, got {given!r}"
    # pydantic's "Input should be greater than 0", or our validators' "Value error, must be ..."
    rule = re.sub(r"^\w+ should ", "must ", problem["msg"].removeprefix("Value error, "))
    rule = rule.replace("a valid integer", "an integer").replace("a valid boolean", "true or false").replace("a valid ", "a ")
    return f"{key} {rule}, got {given!r}"


def _reject_unknown(values: Any, section_class: type, where: str) -> None:
    if not isinstance(values, dict):
        raise RunnerError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    known = field_names(section_class)
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{key}' in {where}; valid keys: {', '.join(known)}", f"{where}.{key}")
