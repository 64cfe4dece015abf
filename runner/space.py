"""Search spaces: YAML file -> validated `SearchSpace` -> Optuna define-by-run function.

A value in the YAML is either a constant or one distribution:

    lr: {loguniform: [1.0e-4, 3.0e-3]}     batch_size: {choice: [32, 64]}
    dropout: {uniform: [0.0, 0.3]}         depth: {int: [2, 4]}

`model.base_width` and `model.depth` may stand in for `model.widths`
(widths = base_width * 2**level, bottleneck = twice the last width), because Optuna's
categorical values must be scalars. A `families:` section holds parameters that exist
only for one model family (Optuna's conditional, define-by-run parameters). A `tune:`
section holds the search's own defaults (samples, max_epochs, ASHA's grace period).

A space is named by a path, or by the name of a built-in one (`unet`, `unet.yaml`): the
YAML files of the repository's search_spaces/, shipped inside the package. `key=value`
overrides on the command line (`train.lr=2e-3`, `'model.depth={int: [2, 4]}'`) change
the YAML before it is checked, so they are checked exactly like it.
"""

from __future__ import annotations

import copy
import errno
import itertools
import os
import re
from dataclasses import dataclass, field
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

import yaml
from pydantic import AfterValidator, PositiveInt, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from runner.config import SECTIONS, TrialConfig, build_section, refuse_other_families
from runner.data.config import DataConfig
from runner.data.sampler import LOADED_BY, data_key
from runner.errors import RunnerError
from runner.models import MODELS
from runner.results import OBJECTIVES
from runner.sections import SECTION_CONFIG, build

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "logint")
WIDTH_KEYS = ("base_width", "depth")
# search_spaces/ of the repository, shipped as package data (in a checkout, runner/spaces links to it).
BUILTIN_SPACES = Path(str(files("runner") / "spaces"))
# Keys `runner tune` sets in every trial itself, and where a search says what it wants instead.
SET_BY_TUNE = {"train.epochs": "every trial runs up to tune.max_epochs (ASHA's max_t); set that or pass --max-epochs"}


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads `1e-3` (no dot) and `1.0e3` (no sign) as text;
    this adds YAML 1.2's rule so they are the numbers a user means.

    It also refuses a key given twice in one mapping, at any depth. YAML requires keys to be
    unique, but PyYAML keeps the last one without a word: a second `train:` section would
    silently drop the whole first one (and with it, say, `epoch_pairs`)."""

    def construct_mapping(self, node, deep=False):
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may override a merged key on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_lines
            except TypeError:
                continue  # an unhashable key: the base class says so
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' is given twice (first on line {first_lines[key] + 1}); keep one",
                    key_node.start_mark)
            first_lines[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _objectives(objectives: list[str]) -> list[str]:
    if "psnr" not in objectives or len(set(objectives)) != len(objectives) or not set(objectives) <= set(OBJECTIVES):
        raise ValueError(f"must list psnr, alone or with costs, once each, from {', '.join(OBJECTIVES)}; e.g. [psnr, macs]")
    return objectives


@pydantic_dataclass(config=SECTION_CONFIG)
class TuneSettings:
    """The `tune:` section: the search's own settings, checked like data:, model: and train:."""

    samples: PositiveInt = 8         # trials
    max_epochs: PositiveInt = 10     # epochs of the longest trial (ASHA's max_t)
    # Epochs every trial gets before ASHA may stop it; unset: half of max_epochs. Scores of the
    # first epochs, at a schedule's high learning rate, rank trials poorly (benchmarks/NOTES-search.md).
    grace_period: PositiveInt | None = None
    reduction_factor: PositiveInt = 2  # ASHA keeps the best 1/reduction_factor at each rung
    # A trial writes a checkpoint every this many epochs, and always after an epoch that improved
    # its best score and after its last; Ray keeps two per trial, its best and its latest.
    checkpoint_every: PositiveInt = 5
    scheduler: Literal["asha", "fifo"] = "asha"  # asha (stops the worst trials early) | fifo (every trial to max_epochs)
    sampler: Literal["tpe", "random"] = "tpe"    # tpe (Optuna's TPESampler) | random (Optuna's RandomSampler)
    # Trials TPE draws at random before it models the results (Optuna's n_startup_trials, whose
    # own default of 10 leaves a search of a dozen trials random: benchmarks/NOTES-search.md).
    startup_trials: PositiveInt = 4
    # The first trials, fixed by hand: each point maps Optuna's parameter names ("train.loss",
    # "vae.train.kl_weight") to values, and the sampler fills in what a point leaves out. This
    # is how a small search is sure to try given values (TPE may draw one value twice).
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    # What the search optimises: [psnr], or psnr with a cost ([psnr, macs]) for Optuna's
    # multi-objective TPE. Several objectives run every trial to max_epochs: ASHA stops
    # trials on one metric, so it is off for them.
    objectives: Annotated[list[str], AfterValidator(_objectives)] = field(default_factory=lambda: ["psnr"])

    @model_validator(mode="after")
    def _grace_within_max_epochs(self) -> TuneSettings:
        if self.grace_period is not None and self.grace_period > self.max_epochs:
            raise ValueError(
                f"tune.grace_period {self.grace_period} is more than tune.max_epochs {self.max_epochs}: ASHA would "
                "stop no trial early; lower tune.grace_period or raise tune.max_epochs (--max-epochs)"
            )
        return self

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


@dataclass
class SearchSpace:
    path: Path
    params: dict[str, dict[str, Any]]                                   # section -> key -> spec
    families: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tune: TuneSettings = field(default_factory=TuneSettings)
    source: str = ""                  # what the user named: a path, or "built-in NAME"
    overrides: tuple[str, ...] = ()   # the command line's key=value changes, as given
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the YAML with the overrides applied

    def yaml_text(self) -> str:
        """The space as it ran: the file itself, or with overrides the YAML they made (for --resume)."""
        if not self.overrides:
            return self.path.read_text()
        header = f"# {self.source}, with the overrides {' '.join(self.overrides)}\n"
        return header + yaml.safe_dump(self.raw, sort_keys=False)

    @property
    def is_constant(self) -> bool:
        specs = [spec for keys in self.params.values() for spec in keys.values()]
        specs += [s for f in self.families.values() for keys in f.values() for s in keys.values()]
        return not any(_is_distribution(spec) for spec in specs)

    def define_by_run(self) -> Callable:
        """A picklable define-by-run function for OptunaSearch (resume needs to pickle it)."""
        return partial(suggest, space=self)


def load_space(name: str | Path, overrides: Sequence[str] = ()) -> SearchSpace:
    """The space at the path `name`, or the built-in one called `name`, with `overrides` applied."""
    path, source = locate_space(name)
    raw = apply_overrides(_read_yaml(path), overrides)
    unknown = set(raw) - {*SECTIONS, "families", "tune"}
    if unknown:
        raise RunnerError(
            f"unknown section '{sorted(unknown)[0]}' in {path}; valid sections: "
            f"{', '.join([*SECTIONS, 'families', 'tune'])}"
        )
    params = {section: _mapping(raw.get(section), f"{path}: {section}") for section in SECTIONS}
    families = {
        family: {s: _mapping(v, f"{path}: families.{family}.{s}") for s, v in _mapping(sections, f"{path}: families.{family}").items()}
        for family, sections in _mapping(raw.get("families"), f"{path}: families").items()
    }
    tune = _tune_settings(raw.get("tune"), path)
    space = SearchSpace(path, params, families, tune, source=source, overrides=tuple(overrides), raw=raw)
    _validate(space)
    return space


def builtin_spaces() -> dict[str, str]:
    """Each built-in space's name and one-line description (its YAML's first comment line)."""
    spaces = {}
    for path in sorted(BUILTIN_SPACES.glob("*.yaml")):
        comments = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
        spaces[path.stem] = comments[0] if comments else ""
    return spaces


def locate_space(name: str | Path) -> tuple[Path, str]:
    """(file, what the user named) for a path that exists, else for a built-in space's name."""
    path = Path(name).expanduser()
    if path.is_file():
        return path, str(path.resolve())
    problem = _not_a_file(path)
    if problem or path.parent != Path("."):
        raise RunnerError(f"{name} {problem or 'does not exist'}; pass a YAML file or a built-in space's name (`runner spaces`)")
    builtin = builtin_space(str(name))
    return builtin, f"built-in {builtin.stem}"


def _not_a_file(path: Path) -> str | None:
    """What `path` is instead of a file, or None when nothing is there."""
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a loop of symbolic links"
        if path.is_symlink():
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return None if error.errno in (errno.ENOENT, errno.ENOTDIR) else f"cannot be reached ({error.strerror})"
    return "is a directory, not a file" if path.is_dir() else "is not a regular file"


def builtin_space(name: str) -> Path:
    """The file of the built-in space `name` (`unet` or `unet.yaml`)."""
    builtin = BUILTIN_SPACES / f"{name.removesuffix('.yaml')}.yaml"
    if not builtin.is_file():
        raise RunnerError(
            f"{name} is neither a YAML file nor a built-in space; built-ins: {', '.join(builtin_spaces())} "
            "(`runner spaces` describes them)"
        )
    return builtin


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`raw` with each `section.key=value` set; a value is YAML (a constant or `{loguniform: [a, b]}`)."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        key, equals, text = override.partition("=")
        parts = key.split(".")
        if not equals or len(parts) < 2 or not all(parts):
            raise RunnerError(f"override '{override}' is not section.key=value; write e.g. train.lr=2e-3")
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as error:
            raise RunnerError(f"override {override}: the value is not valid YAML ({getattr(error, 'problem', error)})") from None
        mapping = raw
        for part in parts[:-1]:
            mapping = mapping.setdefault(part, {})
            if not isinstance(mapping, dict):
                raise RunnerError(f"override {override}: {part} holds a value, not keys")
        mapping[parts[-1]] = value
    return raw


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


def data_sections(space: SearchSpace) -> tuple[list[DataConfig], bool]:
    """The data: sections the space's trials can draw, one per set of loaded arrays (`data_key`),
    and whether that is all of them: a range over a loading key lists only its bounds."""
    sections, complete = {}, True
    for family in _candidates(space.params["model"].get("family", "unet")):
        data = {**space.params["data"], **space.families.get(family, {}).get("data", {})}
        specs = {key: spec for key, spec in data.items() if key in LOADED_BY}
        complete &= all(not _is_distribution(spec) or "choice" in spec for spec in specs.values())
        for values in itertools.product(*map(_candidates, specs.values())):
            section = build_section("data", dict(zip(specs, values)))
            sections.setdefault(data_key(section), section)
    return list(sections.values()), complete


def check_for_tune(space: SearchSpace) -> None:
    """Refuse what `runner tune` would silently overwrite in every trial."""
    for where, _ in _all_specs(space):
        for key, instead in SET_BY_TUNE.items():
            if where == key or where.endswith(f".{key}"):
                raise RunnerError(f"{space.path}: {where} is set by runner tune: {instead}")


def expand_widths(resolved: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    model = resolved.get("model", {})
    if not any(key in model for key in WIDTH_KEYS):
        return resolved
    if "widths" in model:
        raise RunnerError("model.widths and model.base_width/depth both set the widths; keep one")
    resolved = copy.deepcopy(resolved)
    model = resolved["model"]
    base, depth = model.pop("base_width", 32), model.pop("depth", 4)
    for key, value in (("base_width", base), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RunnerError(f"model.{key} must be an integer greater than 0, got {value!r}")
    model["widths"] = [base * 2**level for level in range(depth)]
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


def _candidates(spec: Any) -> list[Any]:
    """The values to check a parameter with: the constant, every choice, or both bounds as drawn."""
    if not _is_distribution(spec):
        return [spec]
    kind, bounds = next(iter(spec.items()))
    if kind in ("uniform", "loguniform"):
        return [float(bound) for bound in bounds]  # Optuna draws floats, even between integer bounds
    return list(bounds)


def _read_yaml(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.reader.ReaderError as error:  # a character YAML does not allow (NUL, other control codes)
        line = text.count("\n", 0, error.position) + 1
        raise RunnerError(f"{path} line {line} holds the character U+{error.character:04X}, which YAML does not "
                          "allow; is it a binary file? Save it as plain UTF-8 text") from None
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
    if not isinstance(raw, dict):
        raise RunnerError(f"{path} must map sections to their keys (model:, train:, ...), got a {type(raw).__name__}")
    return raw


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RunnerError(f"cannot read {path} ({error.strerror}); pass a YAML file you can read") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise RunnerError(f"{path} line {line} is not UTF-8 text (byte 0x{data[error.start]:02x}); "
                          "save it as UTF-8, the encoding YAML files use") from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """`value` as a mapping; an empty section (`train:` with nothing under it) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunnerError(f"{where} must be a mapping of keys to values, got {type(value).__name__}")
    return value


def _tune_settings(raw: Any, path: Path) -> TuneSettings:
    raw = _mapping(raw, f"{path}: tune")
    try:
        settings = build(TuneSettings, raw, "tune")
    except RunnerError as error:
        raise RunnerError(f"{path}: {error}") from None
    asha = [key for key in ("grace_period", "reduction_factor", "scheduler") if key in raw]
    if settings.multi_objective and asha:
        raise RunnerError(
            f"{path}: tune.objectives {', '.join(settings.objectives)} runs every trial to the end, without ASHA, "
            f"which stops trials on one metric; drop tune.{' and tune.'.join(asha)} or keep the one objective psnr"
        )
    return settings


def searched_parameters(space: SearchSpace) -> dict[str, Any]:
    """Optuna's parameter name -> distribution, for every parameter `suggest` samples."""
    names = {f"{section}.{key}": spec for section, keys in space.params.items() for key, spec in keys.items()}
    for family, sections in space.families.items():
        names.update({f"{family}.{section}.{key}": spec for section, keys in sections.items() for key, spec in keys.items()})
    return {name: spec for name, spec in names.items() if _is_distribution(spec)}


def _validate(space: SearchSpace) -> None:
    for where, spec in _all_specs(space):
        _check_spec(spec, where, _origin(space, where))
    _check_points(space)
    for family, sections in space.families.items():
        if family not in MODELS:
            raise RunnerError(
                f"unknown model family '{family}' under families in {space.path}; valid: {', '.join(MODELS)}"
            )
        for section in sections:
            if section not in SECTIONS:
                raise RunnerError(f"unknown section '{section}' under families.{family} in {space.path}")
    try:
        _check_configs(space)
    except RunnerError as error:
        raise RunnerError(f"{_origin(space, getattr(error, 'key', None))}: {error}") from None


def _origin(space: SearchSpace, key: str | None) -> str:
    """Where the value of `key` (`train.lr`) came from: the last override that set it, else the file."""
    for override in reversed(space.overrides):
        name = override.partition("=")[0]
        if key and (name == key or name.endswith(f".{key}")):  # families.vae.train.kl_weight sets train.kl_weight
            return f"override {override}"
    return str(space.path)


def _check_configs(space: SearchSpace) -> None:
    """Build every configuration a value of the space can reach, one parameter at a time, for
    every family it can draw: bad keys, types, ranges and choices fail now, not hours into a search."""
    reachable = _candidates(space.params["model"].get("family", "unet"))
    refuse_other_families(space.params, reachable)
    for family, sections in space.families.items():
        refuse_other_families(sections, [family])
    for family in reachable:
        params = {section: dict(keys) for section, keys in space.params.items()}
        params["model"]["family"] = family
        for section, keys in space.families.get(family, {}).items():
            params[section].update(keys)
        first = {section: {key: _candidates(spec)[0] for key, spec in keys.items()} for section, keys in params.items()}
        TrialConfig.from_dict(expand_widths(first))
        for section, keys in params.items():
            for key, spec in keys.items():
                for value in _candidates(spec)[1:]:
                    TrialConfig.from_dict(expand_widths({**first, section: {**first[section], key: value}}))


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


def _check_spec(spec: Any, where: str, origin: str) -> None:
    """`origin`: the file or the override the spec came from, for the message."""
    if isinstance(spec, dict) and not _is_distribution(spec):
        raise RunnerError(
            f"{where} in {origin} is not a value or a distribution; write one of "
            f"{', '.join(f'{{{d}: [...]}}' for d in DISTRIBUTIONS)}"
        )
    if not _is_distribution(spec):
        return
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise RunnerError(f"{where} in {origin}: choice needs a non-empty list of values")
        if any(isinstance(value, (list, dict)) for value in bounds):
            raise RunnerError(
                f"{where} in {origin}: choices must be scalars; for widths search model.base_width and model.depth"
            )
        return
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)):
        raise RunnerError(f"{where} in {origin}: {kind} needs [low, high] numbers, got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise RunnerError(f"{where} in {origin}: empty range [{low}, {high}]; low must be below high")
    if kind in ("loguniform", "logint") and low <= 0:
        raise RunnerError(f"{where} in {origin}: {kind} needs a positive low bound, got {low}")
    if kind in ("int", "logint") and not all(isinstance(b, int) for b in bounds):
        raise RunnerError(f"{where} in {origin}: {kind} needs integer bounds, got {bounds!r}")
