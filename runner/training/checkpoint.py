"""The checkpoint format, written and read here only: one `TrainingState` per directory.

A checkpoint directory holds `model.pt` (the whole state) and `metrics.json` (its summary).
`model.pt` carries the trial configuration, input shape, dataset and metrics beside the
weights, so a model is rebuilt from the checkpoint alone. It is loaded with
`torch.load(weights_only=True)`: a checkpoint from elsewhere cannot run code. Every tensor
is stored on the CPU and nothing in it depends on the device it was written on, so a
checkpoint written on a GPU resumes on a CPU and back. `metrics.json` lets the best-trial
lookup rank checkpoints without torch.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runner.data.config import DataConfig
from runner.errors import RunnerError
from runner.files import write_atomic, write_json_atomic
from runner.models.config import ModelConfig
from runner.sections import build

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 3
# Format 1 also held the training sampler's generator state (device-specific); each epoch's
# pairs are now re-derived from the seed and the epoch, so that entry is ignored on load.
# Formats 1 and 2 held the moving average's weights twice, in `model` and in `ema`.
READABLE_FORMATS = (1, 2, 3)
FORMAT_1_ONLY = ("sampler_generator",)


@dataclass
class TrainingState:
    config: dict[str, Any]            # the trial's TrialConfig.to_dict(): the model is rebuilt from it alone
    input_shape: list[int]            # [channels, height, width] of the training images
    dataset: str
    epoch: int                        # epochs completed
    metrics: dict[str, Any]           # what fit reported after that epoch
    model: dict[str, torch.Tensor]    # the evaluated weights: the moving average's when the trial keeps one
    optimizer: dict[str, Any]
    elapsed_s: float                  # wall-clock spent so far; a resumed run's budget counts it
    training_model: dict[str, torch.Tensor] | None = None  # the live weights, when `model` holds the average
    ema: dict[str, Any] | None = None  # the moving average's count (its weights are `model`), to go on averaging after a resume

    @property
    def family(self) -> str:
        return self.config["model"]["family"]

    @property
    def data_config(self) -> DataConfig:
        return _section(DataConfig, self.config["data"], "data")

    @property
    def model_config(self) -> ModelConfig:
        return _section(ModelConfig, self.config["model"], "model")

    def to_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_dict(cls, values: Any, where: str = "the checkpoint") -> TrainingState:
        if not isinstance(values, dict) or values.get("format") not in READABLE_FORMATS:
            raise RunnerError(f"{where} is not a checkpoint of this runner (formats {', '.join(map(str, READABLE_FORMATS))})")
        fields = {key: value for key, value in values.items() if key not in ("format", *FORMAT_1_ONLY)}
        try:
            return cls(**fields)
        except TypeError as error:  # a missing or an unknown entry
            raise RunnerError(f"{where} does not hold a training state of this runner ({error}); "
                              "re-run the trial or pick another checkpoint") from None


def save_checkpoint(directory: str | Path, state: TrainingState) -> Path:
    """Write `state` atomically: a reader never sees a half-written file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / MODEL_FILE, lambda file: torch.save(state.to_dict(), file))
    write_json_atomic(directory / METRICS_FILE, {
        "epoch": state.epoch, "metrics": state.metrics, "dataset": state.dataset,
        "input_shape": state.input_shape, "family": state.family, "config": state.config,
    })
    return directory


def load_checkpoint(path: str | Path) -> TrainingState:
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise RunnerError(f"no checkpoint at {file}; pass a checkpoint directory that holds {MODEL_FILE}")
    try:
        values = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0][:160]
        raise RunnerError(
            f"refusing to load {file}: it is not a plain-weights checkpoint ({reason}); "
            "only checkpoints written by this runner are accepted"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise RunnerError(f"checkpoint {file} is corrupt or truncated ({type(error).__name__}); re-run the trial or pick another checkpoint") from None
    return TrainingState.from_dict(values, str(file))


def ema_state(state: TrainingState) -> dict[str, Any]:
    """The state dict of the moving average (torch's AveragedModel) that `state` was saved from."""
    return {**{f"module.{key}": value for key, value in state.model.items()}, **state.ema}


def rebuild_model(state: TrainingState) -> torch.nn.Module:
    """The evaluation model of a checkpoint (the averaged weights when the trial kept them), in eval mode."""
    from runner.models import build_model

    channels, height, width = state.input_shape
    model = build_model(state.model_config, channels, (height, width))
    model.load_state_dict(state.model)
    return model.eval()


def to_cpu(value: Any) -> Any:
    """A copy of a state dict (nested dicts and lists of tensors) with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


def _section(section: type, values: dict[str, Any], name: str):
    """A section of the stored config, checked by the same rules as a YAML's (runner/sections.py)."""
    try:
        return build(section, values, name)
    except RunnerError as error:
        raise RunnerError(f"the checkpoint's config does not fit this runner ({error}); "
                          "it was written by another version of the runner") from None
