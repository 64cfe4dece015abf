"""Which model `separate` runs: the one that ships inside the package, the user's exports,
or a file named on the command line, and which of them is the default.

Every model is an `.onnx` file with its sidecar `.json` beside it, and is named by its file
stem. The shipped model lives in `runner/inference/shipped/` (package data); exports live
in `export/` (`--models-dir`). The default rule, so the default never silently gets worse:
the export that `runner export` last made the default of that folder, recorded in its
`default-model.json` (`DEFAULT_RECORD`), else the shipped model. `runner export` makes its
model the default (`offer_default`) only when asked (`--set-default`), when there is no
default to beat, or when its recorded validation PIT-PSNR beats the current default's on
the same data (dataset, channels and image size; a `folder` dataset is never taken for
another, since the sidecar does not say which folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from runner.errors import RunnerError
from runner.files import write_json_atomic
from runner.inference.sidecar import read_sidecar, sidecar_path

SHIPPED_DIR = Path(__file__).with_name("shipped")
DEFAULT_MODELS_DIR = Path("export")
DEFAULT_RECORD = "default-model.json"  # in a models folder: which of its exports is the default, and why
QUALITY = "val_pit_psnr"  # the recorded score defaults are compared on: every export and the shipped model have it
CHANNEL_NAMES = {1: "grey", 3: "RGB"}


@dataclass(frozen=True)
class ModelEntry:
    name: str       # the file stem, what --model NAME takes
    path: Path
    shipped: bool   # inside the package, rather than in the models folder or named by path
    info: dict      # the sidecar
    exported: float  # seconds since the epoch: the sidecar's exported_at, else the file's mtime
    why: str = ""   # why it runs: "--model", or why it is the default

    @property
    def where(self) -> str:
        return "shipped with separation-runner" if self.shipped else str(self.path)

    @property
    def data(self) -> str:
        """What it was trained on, as defaults are compared: dataset, size and channels."""
        height, width = self.info["image_size"]
        return f"{self.info.get('dataset', '?')} {width}x{height} {CHANNEL_NAMES[self.info['channels']]}"

    @property
    def quality(self) -> float | None:
        score = self.info.get("metrics", {}).get(QUALITY)
        return score if isinstance(score, (int, float)) and not isinstance(score, bool) else None

    def facts(self) -> dict[str, str]:
        """What --list-models shows: training data, quality, size."""
        info = self.info
        return {
            "name": self.name,
            "trained on": self.data,
            "PIT-PSNR": _quality(info.get("metrics", {})),
            "precision": info.get("precision", "fp32"),
            "size": f"{self.path.stat().st_size / 1e6:.1f} MB",
            "exported": datetime.fromtimestamp(self.exported).strftime("%Y-%m-%d %H:%M"),
            "where": self.where,
        }


def _quality(metrics: dict) -> str:
    """The test score when the sidecar has one (the shipped model's), else the validation score."""
    if "test_pit_psnr" in metrics:
        return f"{metrics['test_pit_psnr']:.2f} dB ({metrics.get('test_pairs', '?')} test pairs)"
    if "val_pit_psnr" in metrics:
        return f"{metrics['val_pit_psnr']:.2f} dB (validation)"
    return "?"


def available(models_dir: Path = DEFAULT_MODELS_DIR) -> list[ModelEntry]:
    """The shipped models, then those in models_dir: every .onnx with its sidecar beside it."""
    return [*_entries(SHIPPED_DIR, shipped=True), *_entries(models_dir, shipped=False)]


def default_model(models_dir: Path = DEFAULT_MODELS_DIR) -> ModelEntry | None:
    """The export recorded as the default of models_dir, else the shipped model; None when neither exists.
    Its `why` says which and why."""
    record = _read_record(models_dir)
    if record is not None:
        named = [entry for entry in _entries(models_dir, shipped=False) if entry.name == record["model"]]
        if named:
            return replace(named[0], why=f"default: {record['why']}")
    shipped = _entries(SHIPPED_DIR, shipped=True)
    if not shipped:
        return None
    if record is not None:
        why = f"default: {models_dir / DEFAULT_RECORD} names {record['model']}, which is gone, so the shipped model runs"
    else:
        why = f"default: the shipped model, as no export in {models_dir}/ has been made the default"
    return replace(shipped[0], why=why)


def choose(model: str | Path | None, models_dir: Path = DEFAULT_MODELS_DIR) -> ModelEntry:
    """The model to run: a path to an .onnx file, the name of an available model, or (None) the default."""
    if model is not None and Path(model).is_file():
        return replace(_entry(Path(model), shipped=False), why="--model")
    if model is not None and (Path(model).suffix == ".onnx" or len(Path(model).parts) > 1):
        raise RunnerError(
            f"model {model} does not exist: pass --model an exported .onnx file (`runner export --best` makes one) "
            "or a model's name (`separate --list-models`)"
        )
    if model is None:
        chosen = default_model(models_dir)
        if chosen is None:
            exports = _entries(models_dir, shipped=False)
            raise RunnerError(
                f"no model to run: none ships with this install and {models_dir}/ holds no exported model "
                "(NAME.onnx with NAME.json); run `runner export --best` or pass --model" if not exports else
                f"no default model: none ships with this install and no export in {models_dir}/ has been made the "
                f"default; pass --model NAME (`separate --list-models`)"
            )
        return chosen
    models = available(models_dir)
    named = [entry for entry in models if entry.name == str(model)]
    if not named:
        names = ", ".join(sorted({entry.name for entry in models})) or "none"
        raise RunnerError(f"no model named {model!r} (the models here: {names}); `separate --list-models` shows them")
    return replace(named[-1], why="--model")  # an export of the shipped model's name is the user's own


def offer_default(path: Path, set_default: bool = False) -> str:
    """Make the export at `path` the default of its folder when asked, when there is no
    default, or when its recorded quality beats the current default's on the same data.
    Returns the line that says what happened."""
    new, current = _entry(Path(path), shipped=False), default_model(Path(path).parent)
    if set_default:
        why = "made the default by `runner export --set-default`"
    elif current is None:
        why = "the first model here, with none shipped"
    elif current.path == new.path:
        return f"{new.name} stays separate's default model"
    else:
        reason = _not_better(new, current)
        if reason:
            return (f"{new.name} is not separate's default model: {reason}, so {current.name} stays the default; "
                    f"run it with `separate --model {new.name}`, or export it again with --set-default --overwrite")
        why = f"its val PIT-PSNR {new.quality:.2f} dB beat {current.name}'s {current.quality:.2f} dB on {new.data}"
    write_json_atomic(new.path.parent / DEFAULT_RECORD, {"model": new.name, "why": why}, sort_keys=True)
    return f"{new.name} is now separate's default model ({why})"


def _not_better(new: ModelEntry, current: ModelEntry) -> str | None:
    """Why `new` does not beat `current` on the record, or None when it does."""
    if new.info.get("dataset") == "folder":
        return "it was trained on a data.dataset: folder, and its sidecar does not say which, so its score compares with none"
    if new.data != current.data:
        return f"it was trained on {new.data} and {current.name} on {current.data}, so their scores do not compare"
    if new.quality is None or current.quality is None:
        return f"{new.name if new.quality is None else current.name} has no recorded val PIT-PSNR to compare"
    if new.quality <= current.quality:
        return f"its val PIT-PSNR {new.quality:.2f} dB does not beat {current.name}'s {current.quality:.2f} dB on {new.data}"
    return None


def _read_record(models_dir: Path) -> dict | None:
    path = Path(models_dir) / DEFAULT_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RunnerError(f"cannot read {path} ({error}): delete it, and the shipped model is the default again") from None
    if not (isinstance(record, dict) and isinstance(record.get("model"), str) and isinstance(record.get("why"), str)):
        raise RunnerError(f"{path} is not a default-model record: delete it, and the shipped model is the default again")
    return record


def _entries(folder: Path, shipped: bool) -> list[ModelEntry]:
    paths = sorted(Path(folder).glob("*.onnx")) if Path(folder).is_dir() else []
    return [_entry(path, shipped) for path in paths if sidecar_path(path).is_file()]


def _entry(path: Path, shipped: bool) -> ModelEntry:
    info = read_sidecar(path)
    return ModelEntry(path.stem, path, shipped, info, _exported_time(info, path))


def _exported_time(info: dict, path: Path) -> float:
    stamp = info.get("exported_at")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            pass  # a hand-edited stamp: the file's own time is the next best witness
    return path.stat().st_mtime
