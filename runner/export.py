"""Checkpoint -> ONNX: rebuild from the checkpoint alone, export, check, compare, then publish.

The export lands in a temporary directory first; `onnx.checker` and an onnxruntime vs.
torch parity check on real validation mixtures must pass before the `.onnx` and its
sidecar `.json` are moved into the output directory. A failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from runner.checkpoint import load_checkpoint, rebuild_model
from runner.config import TrialConfig
from runner.errors import RunnerError
from runner.results import CheckpointInfo
from runner.sidecar import sidecar_path, write_sidecar

OPSET = 18
PARITY_TOLERANCE = 1e-4
PARITY_PAIRS = 64


def export_checkpoint(
    checkpoint: CheckpointInfo,
    output_dir: Path,
    *,
    experiment: str,
    data_dir: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export one checkpoint to `output_dir/<experiment>-<family>.onnx` (+ `.json`); returns the ONNX path."""
    state = load_checkpoint(checkpoint.path)
    model, config = rebuild_model(state)
    target = output_dir / f"{experiment}-{config.model.family}.onnx"
    if not overwrite and (target.exists() or sidecar_path(target).exists()):
        raise RunnerError(f"{target} already exists; pass --overwrite to replace it or -o to export elsewhere")
    _prepare_output_dir(output_dir)
    mixtures = validation_mixtures(config, data_dir)

    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as staging:
        staged = Path(staging) / target.name
        export_onnx(model, mixtures[:2], staged)
        check_parity(model, staged, mixtures)
        write_sidecar(staged, {
            "channels": state["input_shape"][0],
            "image_size": state["input_shape"][1:],
            "size_multiple": model.size_multiple,
            "dynamic_spatial": model.dynamic_spatial,
            "family": config.model.family,
            "dataset": state["dataset"],
            "metrics": {k: v for k, v in state["metrics"].items() if k.startswith("val_")},
            "epoch": state["epoch"],
            "experiment": experiment,
            "trial": checkpoint.trial,
            "checkpoint": str(checkpoint.path),
            "opset": OPSET,
            "precision": "fp32",
        })
        # Sidecar first, then the model: `separate` looks for .onnx files, so it never finds
        # a model whose sidecar is not in place yet.
        os.replace(sidecar_path(staged), sidecar_path(target))
        os.replace(staged, target)
    return target


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export with the dynamo exporter: input `mixture`, outputs `source_1`, `source_2`, dynamic batch."""
    import onnx

    dim = torch.export.Dim.DYNAMIC
    axes = {0: dim, 2: dim, 3: dim} if model.dynamic_spatial else {0: dim}
    # The exporter narrates every step on stdout and warns about torchvision; keep the CLI quiet.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path),
            input_names=["mixture"], output_names=["source_1", "source_2"],
            dynamic_shapes={"mixture": axes}, opset_version=OPSET, external_data=False,
        )
    onnx.checker.check_model(str(path), full_check=True)


def check_parity(model: torch.nn.Module, path: Path, mixtures: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime and torch; RunnerError beyond the tolerance."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ort_1, ort_2) = session.run(["source_1", "source_2"], {"mixture": mixtures.numpy()})
    with torch.no_grad():
        torch_1, torch_2 = model(mixtures)
    difference = max(np.abs(ort_1 - torch_1.numpy()).max(), np.abs(ort_2 - torch_2.numpy()).max())
    if not difference <= PARITY_TOLERANCE:
        raise RunnerError(
            f"onnxruntime and torch disagree by {difference:.2e} (tolerance {PARITY_TOLERANCE:g}); "
            "the export is not trustworthy, nothing was written"
        )
    return float(difference)


def validation_mixtures(config: TrialConfig, data_dir: str | None) -> torch.Tensor:
    """The first validation mixtures of the checkpoint's own dataset."""
    from runner.pairs import load_pair_data, make_mixtures

    data = load_pair_data(config.data, data_dir)
    mixture, _, _ = make_mixtures(data.val, data.val_pairs[:PARITY_PAIRS])
    return mixture


def _prepare_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunnerError(f"cannot create output directory {output_dir} ({error.strerror}); pass -o DIR somewhere writable") from None
    if not os.access(output_dir, os.W_OK):
        raise RunnerError(f"output directory {output_dir} is not writable; pass -o DIR somewhere writable")
