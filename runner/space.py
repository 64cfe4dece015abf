"""Search spaces: YAML file -> validated `SearchSpace` -> Optuna define-by-run function.

A value in the YAML is either a constant or one distribution:

    lr: {loguniform: [1.0e-4, 3.0e-3]}     batch_size: {choice: [32, 64]}
    dropout: {uniform: [0.0, 0.3]}         depth: {int: [2, 4]}

`model.base_width` and `model.depth` may stand in for `model.widths`
(widths = base_width * 2**level, bottleneck = twice the last width), because Optuna's
categorical values must be scalars. A `families:` section holds parameters that exist
only for one model family (Optuna's conditional, define-by-run parameters). A `tune:`
section holds the search's own defaults (samples, max_epochs, ASHA's grace period).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import yaml

from runner.config import CHOICES, SECTIONS, TrialConfig, field_names
from runner.errors import RunnerError

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "logint")
WIDTH_KEYS = ("base_width", "depth")


@dataclass
class TuneSettings:
    samples: int = 8                 # trials
    max_epochs: int = 10             # epochs of the longest trial (ASHA's max_t)
    grace_period: int = 1            # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 2        # ASHA keeps the best 1/reduction_factor at each rung
    # The first trials, fixed by hand: each point maps Optuna's parameter names ("train.loss",
    # "vae.train.kl_weight") to values, and the sampler fills in what a point leaves out. This
    # is how a small search is sure to try given values (TPE may draw one value twice).
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SearchSpace:
    path: Path
    params: dict[str, dict[str, Any]]                                   # section -> key -> spec
    families: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tune: TuneSettings = field(default_factory=TuneSettings)

    @property
    def is_constant(self) -> bool:
        specs = [spec for keys in self.params.values() for spec in keys.values()]
        specs += [s for f in self.families.values() for keys in f.values() for s in keys.values()]
        return not any(_is_distribution(spec) for spec in specs)

    def define_by_run(self) -> Callable:
        """A picklable define-by-run function for OptunaSearch (resume needs to pickle it)."""
        return partial(suggest, space=self)


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    raw = _read_yaml(path)
    unknown = set(raw) - {*SECTIONS, "families", "tune"}
    if unknown:
        raise RunnerError(
            f"unknown section '{sorted(unknown)[0]}' in {path}; valid sections: "
            f"{', '.join([*SECTIONS, 'families', 'tune'])}"
        )
    params = {section: _mapping(raw.get(section) or {}, f"{path}: {section}") for section in SECTIONS}
    families = {
        family: {s: _mapping(v or {}, f"{path}: families.{family}.{s}") for s, v in sections.items()}
        for family, sections in _mapping(raw.get("families") or {}, f"{path}: families").items()
    }
    tune = _tune_settings(raw.get("tune") or {}, path)
    space = SearchSpace(path, params, families, tune)
    _validate(space)
    return space


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """Sample one trial. Returns {"trial": nested config dict} for the trainable."""
    resolved = {
        section: {key: _suggest(trial, f"{section}.{key}", spec) for key, spec in keys.items()}
        for section, keys in space.params.items()
    }
    family = resolved["model"].get("family", "unet")
    for section, keys in space.families.get(family, {}).items():
        for key, spec in keys.items():
            resolved[section][key] = _suggest(trial, f"{family}.{section}.{key}", spec)
    return {"trial": expand_widths(resolved)}


def resolve_constants(space: SearchSpace) -> TrialConfig:
    """The one configuration of a constants-only file (what `runner train` runs)."""
    if not space.is_constant:
        raise RunnerError(
            f"{space.path} has search ranges; `runner train` takes constants only "
            f"(use `runner tune --space {space.path}` to search)"
        )
    return TrialConfig.from_dict(suggest(None, space)["trial"])


def expand_widths(resolved: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    model = resolved.get("model", {})
    if not any(key in model for key in WIDTH_KEYS):
        return resolved
    resolved = copy.deepcopy(resolved)
    model = resolved["model"]
    base, depth = model.pop("base_width", 32), model.pop("depth", 4)
    model["widths"] = [int(base) * 2**level for level in range(int(depth))]
    model.setdefault("bottleneck", model["widths"][-1] * 2)
    return resolved


def _suggest(trial, name: str, spec: Any) -> Any:
    if not _is_distribution(spec):
        return spec
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        return trial.suggest_categorical(name, bounds)
    if kind == "uniform":
        return trial.suggest_float(name, *bounds)
    if kind == "loguniform":
        return trial.suggest_float(name, *bounds, log=True)
    return trial.suggest_int(name, *bounds, log=kind == "logint")


def _is_distribution(spec: Any) -> bool:
    return isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS


def _first_value(spec: Any) -> Any:
    if not _is_distribution(spec):
        return spec
    return next(iter(spec.values()))[0]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunnerError(f"search space {path} does not exist; pass a YAML file such as search_spaces/unet.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        # The parser notices some mistakes lines later (an unclosed bracket at the next key):
        # name the line where the construct it was reading began too.
        context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and start and mark and start.line != mark.line:
            problem += f" ({context} that begins on line {start.line + 1})"
        raise RunnerError(f"malformed YAML in {path}{where}: {problem}") from None
    if raw is None:
        raise RunnerError(f"{path} is empty; it needs at least a model section")
    return _mapping(raw, str(path))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RunnerError(f"{where} must be a mapping of keys to values, got {type(value).__name__}")
    return value


def _tune_settings(raw: Any, path: Path) -> TuneSettings:
    raw = _mapping(raw, f"{path}: tune")
    known = field_names(TuneSettings)
    for key, value in raw.items():
        if key not in known:
            raise RunnerError(f"unknown key '{key}' in {path}: tune; valid keys: {', '.join(known)}")
        if key == "points_to_evaluate":
            if not isinstance(value, list) or not all(isinstance(point, dict) for point in value):
                raise RunnerError(
                    f"tune.points_to_evaluate in {path} must be a list of mappings, e.g. [{{train.loss: fixed}}]"
                )
        elif not isinstance(value, int) or value < 1:
            raise RunnerError(f"tune.{key} in {path} must be a positive integer, got {value!r}")
    return TuneSettings(**raw)


def searched_parameters(space: SearchSpace) -> dict[str, Any]:
    """Optuna's parameter name -> distribution, for every parameter `suggest` samples."""
    names = {f"{section}.{key}": spec for section, keys in space.params.items() for key, spec in keys.items()}
    for family, sections in space.families.items():
        names.update({f"{family}.{section}.{key}": spec for section, keys in sections.items() for key, spec in keys.items()})
    return {name: spec for name, spec in names.items() if _is_distribution(spec)}


def _validate(space: SearchSpace) -> None:
    for where, spec in _all_specs(space):
        _check_spec(spec, where, space.path)
    _check_points(space)
    families = CHOICES[("model", "family")]
    for family in space.families:
        if family not in families:
            raise RunnerError(
                f"unknown model family '{family}' under families in {space.path}; valid: {', '.join(families)}"
            )
    # Build one configuration per reachable family so unknown keys and values fail now,
    # not hours into a search.
    family_spec = space.params["model"].get("family", "unet")
    reachable = family_spec["choice"] if _is_distribution(family_spec) else [family_spec]
    for family in reachable:
        resolved = {s: {k: _first_value(v) for k, v in keys.items()} for s, keys in space.params.items()}
        resolved["model"]["family"] = family
        for section, keys in space.families.get(family, {}).items():
            if section not in SECTIONS:
                raise RunnerError(f"unknown section '{section}' under families.{family} in {space.path}")
            resolved[section].update({k: _first_value(v) for k, v in keys.items()})
        try:
            TrialConfig.from_dict(expand_widths(resolved))
        except RunnerError as error:
            raise RunnerError(f"{space.path}: {error}") from None
        except TypeError as error:
            raise RunnerError(f"{space.path}: {error}") from None


def _all_specs(space: SearchSpace):
    for section, keys in space.params.items():
        for key, spec in keys.items():
            yield f"{section}.{key}", spec
    for family, sections in space.families.items():
        for section, keys in sections.items():
            for key, spec in _mapping(keys, f"families.{family}.{section}").items():
                yield f"families.{family}.{section}.{key}", spec


def _check_points(space: SearchSpace) -> None:
    searched = searched_parameters(space)
    for number, point in enumerate(space.tune.points_to_evaluate, start=1):
        where = f"tune.points_to_evaluate point {number} in {space.path}"
        for name, value in point.items():
            if name not in searched:
                raise RunnerError(f"{where}: '{name}' is not a searched parameter; searched: {', '.join(searched) or 'none'}")
            if not _allows(searched[name], value):
                raise RunnerError(f"{where}: {name} = {value!r} is outside its distribution {searched[name]}")


def _allows(spec: dict[str, Any], value: Any) -> bool:
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        return value in bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind in ("int", "logint") and not isinstance(value, int):
        return False
    return bounds[0] <= value <= bounds[1]


def _check_spec(spec: Any, where: str, path: Path) -> None:
    if isinstance(spec, dict) and not _is_distribution(spec):
        raise RunnerError(
            f"{where} in {path} is not a value or a distribution; write one of "
            f"{', '.join(f'{{{d}: [...]}}' for d in DISTRIBUTIONS)}"
        )
    if not _is_distribution(spec):
        return
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise RunnerError(f"{where} in {path}: choice needs a non-empty list of values")
        if any(isinstance(value, (list, dict)) for value in bounds):
            raise RunnerError(
                f"{where} in {path}: choices must be scalars; for widths search model.base_width and model.depth"
            )
        section, key = where.split(".")[-2:]
        allowed = CHOICES.get((section, key))
        if allowed:
            for value in bounds:
                if value not in allowed:
                    raise RunnerError(f"{where} in {path}: '{value}' is not one of {', '.join(allowed)}")
        return
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)):
        raise RunnerError(f"{where} in {path}: {kind} needs [low, high] numbers, got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise RunnerError(f"{where} in {path}: empty range [{low}, {high}]; low must be below high")
    if kind in ("loguniform", "logint") and low <= 0:
        raise RunnerError(f"{where} in {path}: {kind} needs a positive low bound, got {low}")
    if kind in ("int", "logint") and not all(isinstance(b, int) for b in bounds):
        raise RunnerError(f"{where} in {path}: {kind} needs integer bounds, got {bounds!r}")
