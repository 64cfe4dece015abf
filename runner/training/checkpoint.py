"""Self-describing checkpoints: one directory with `model.pt` and a readable `metrics.json`.

`model.pt` carries the trial configuration, input shape, dataset and metrics beside the
weights, so a model is rebuilt from the checkpoint alone. It is loaded with
`torch.load(weights_only=True)`: a checkpoint from elsewhere cannot run code.
`metrics.json` lets the best-trial lookup rank checkpoints without torch.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from runner.config import TrialConfig
from runner.errors import RunnerError
from runner.files import write_atomic, write_json_atomic

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 1


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically: a reader never sees a half-written file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / MODEL_FILE, lambda file: torch.save(state, file))
    summary = {key: state[key] for key in ("epoch", "metrics", "dataset", "input_shape")}
    summary["family"] = state["config"]["model"]["family"]
    summary["config"] = state["config"]
    write_json_atomic(directory / METRICS_FILE, summary)
    return directory


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise RunnerError(f"no checkpoint at {file}; pass a checkpoint directory that holds {MODEL_FILE}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0][:160]
        raise RunnerError(
            f"refusing to load {file}: it is not a plain-weights checkpoint ({reason}); "
            "only checkpoints written by this runner are accepted"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise RunnerError(f"checkpoint {file} is corrupt or truncated ({type(error).__name__}); re-run the trial or pick another checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunnerError(f"{file} is not a checkpoint of this runner (format {CHECKPOINT_FORMAT})")
    return state


def rebuild_model(state: dict[str, Any]) -> tuple[torch.nn.Module, TrialConfig]:
    """The evaluation model of a checkpoint (EMA weights when the trial kept them), in eval mode."""
    from runner.models import build_model

    config = TrialConfig.from_dict(state["config"])
    channels, height, width = state["input_shape"]
    model = build_model(config.model, channels, (height, width))
    model.load_state_dict(state["model"])
    return model.eval(), config

