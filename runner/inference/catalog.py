"""Which model `separate` runs: the one that ships inside the package, the user's exports,
or a file named on the command line.

Every model is an `.onnx` file with its sidecar `.json` beside it, and is named by its file
stem. The shipped model lives in `runner/inference/shipped/` (package data); exports live
in `export/` (`--models-dir`). The default rule: the newest of them all, by the time its
sidecar says it was exported (the file's modification time for sidecars written before
that key). The shipped model was exported when this package was made, so the user's own
`runner export` wins from then on, and until there is one the shipped model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from runner.errors import RunnerError
from runner.inference.sidecar import read_sidecar, sidecar_path

SHIPPED_DIR = Path(__file__).with_name("shipped")
DEFAULT_MODELS_DIR = Path("export")


@dataclass(frozen=True)
class ModelEntry:
    name: str       # the file stem, what --model NAME takes
    path: Path
    shipped: bool   # inside the package, rather than in the models folder or named by path
    info: dict      # the sidecar
    exported: float  # seconds since the epoch: the sidecar's exported_at, else the file's mtime

    @property
    def where(self) -> str:
        return "shipped with separation-runner" if self.shipped else str(self.path)

    def facts(self) -> dict[str, str]:
        """What --list-models shows: training data, quality, size."""
        info = self.info
        height, width = info["image_size"]
        return {
            "name": self.name,
            "trained on": f"{info.get('dataset', '?')} {width}x{height}",
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


def default_model(models: list[ModelEntry]) -> ModelEntry | None:
    """The newest model, ties broken by name so the choice never depends on listing order."""
    return max(models, key=lambda entry: (entry.exported, entry.name), default=None)


def choose(model: str | Path | None, models_dir: Path = DEFAULT_MODELS_DIR) -> ModelEntry:
    """The model to run: a path to an .onnx file, the name of an available model, or (None) the default."""
    if model is not None and Path(model).is_file():
        return _entry(Path(model), shipped=False)
    if model is not None and (Path(model).suffix == ".onnx" or len(Path(model).parts) > 1):
        raise RunnerError(
            f"model {model} does not exist: pass --model an exported .onnx file (`runner export --best` makes one) "
            "or a model's name (`separate --list-models`)"
        )
    models = available(models_dir)
    if model is None:
        chosen = default_model(models)
        if chosen is None:
            raise RunnerError(
                f"no model to run: none ships with this install and {models_dir}/ holds no exported model "
                "(NAME.onnx with NAME.json); run `runner export --best` or pass --model"
            )
        return chosen
    named = [entry for entry in models if entry.name == str(model)]
    if not named:
        names = ", ".join(sorted({entry.name for entry in models})) or "none"
        raise RunnerError(f"no model named {model!r} (the models here: {names}); `separate --list-models` shows them")
    return default_model(named)


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
