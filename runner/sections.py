"""A configuration section built from a mapping, and pydantic's complaint about it as one line.

Every section (data:, model:, train:, tune:) is a pydantic dataclass that checks its keys'
types, ranges and choices as it is built and on every assignment (`validate_assignment`),
so a value set after loading (a command-line flag, the tune driver's epochs) is checked by
the same rules. pydantic rather than hand-written checks: the rule sits on the key's own
line (`batch_size: PositiveInt = 64`), strict mode refuses `true` for an integer and text
for a number, and `one_line` turns its first complaint into a line such as
`train.batch_size must be greater than 0, got 0`. An unknown key names the valid ones, so
a typo never silently falls back to a default. The checkpoint reader and the configuration
stage both build sections here, so these rules have one home.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydantic import ConfigDict, ValidationError

from runner.errors import RunnerError

# Every section's pydantic config: no bool for an int, no text for a number, no NaN or
# infinity, and an assignment is checked like a value given when the section is built.
SECTION_CONFIG = ConfigDict(strict=True, allow_inf_nan=False, validate_assignment=True)


class ConfigError(RunnerError):
    """A section's complaint, with the key it is about (`train.lr`; None for a check across keys),
    so a caller can say where that key's value came from (a file, or an override)."""

    def __init__(self, message: str, key: str | None):
        super().__init__(message)
        self.key = key


def build(section_class: type, values: Any, where: str):
    """`section_class` built from `values`, or a ConfigError of one line naming `where.key`."""
    reject_unknown(values, section_class, where)
    try:
        return section_class(**values)
    except ValidationError as error:
        loc = error.errors()[0]["loc"]
        raise ConfigError(one_line(error, where), f"{where}.{loc[0]}" if loc else None) from None


def field_names(section_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(section_class)]


def reject_unknown(values: Any, section_class: type, where: str) -> None:
    if not isinstance(values, dict):
        raise RunnerError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    known = field_names(section_class)
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{key}' in {where}; valid keys: {', '.join(known)}", f"{where}.{key}")


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
