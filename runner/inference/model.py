"""An exported model as `separate` runs it: the ONNX file, checked against its sidecar, in
an onnxruntime session, with what the sidecar says about the images it takes.

`load_model` verifies the file's sha256 before onnxruntime parses a byte of it;
`prepare_batch` pads images to a size the model takes; `Model.run` runs a batch.
numpy and onnxruntime only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from runner.errors import RunnerError
from runner.inference.sidecar import read_sidecar, verify
from runner.inference.tiling import TILE

INPUT_NAME = "mixture"
OUTPUT_NAMES = ("source_1", "source_2")
MODE_OF_CHANNELS = {1: "L", 3: "RGB"}
BATCH_PIXEL_BUDGET = TILE * TILE  # pixels of one model call: smaller images share one, larger ones are tiled
FAR_FROM_TRAINING = 2  # an input side over 2x (or under 1/2x) the training size draws a warning


@dataclass(frozen=True)
class Model:
    """A verified ONNX model with what its sidecar says about the images it takes."""

    path: Path
    session: ort.InferenceSession = field(repr=False)
    channels: int
    image_size: tuple[int, int]  # (height, width) it was trained on; the only size it takes unless dynamic
    size_multiple: int
    dynamic_spatial: bool
    input_dtype: np.dtype  # float32, or float16 for an fp16 export
    info: dict = field(repr=False)  # the whole sidecar

    @property
    def mode(self) -> str:
        return MODE_OF_CHANNELS[self.channels]

    def size_problem(self, width: int, height: int) -> str | None:
        """Why this model cannot take a width x height image, or None when it can."""
        if self.dynamic_spatial or (height, width) == self.image_size:
            return None
        needed_height, needed_width = self.image_size
        return f"the model needs {needed_width}x{needed_height} images, got {width}x{height}: resize it first"

    def far_from_training(self, width: int, height: int) -> bool:
        """True when a side is more than FAR_FROM_TRAINING times larger or smaller than in training."""
        trained_height, trained_width = self.image_size
        ratios = (width / trained_width, height / trained_height)
        return any(ratio > FAR_FROM_TRAINING or ratio < 1 / FAR_FROM_TRAINING for ratio in ratios)

    def size_warning(self, width: int, height: int, name: str = "the image") -> str:
        """The one line a user sees when an input is far from the training size."""
        trained_height, trained_width = self.image_size
        return (
            f"{name} is {width}x{height}, far from the {trained_width}x{trained_height} images the model was "
            "trained on, so expect a poor separation; to separate images like these, train on your own "
            "(data.dataset: folder, see the README)"
        )

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) rounded up to the size multiple the model needs."""
        multiple = self.size_multiple if self.dynamic_spatial else 1
        return -(-height // multiple) * multiple, -(-width // multiple) * multiple

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both sources, float32 and unclipped, for a float32 [N, C, H, W] batch of sizes it takes."""
        feed = {INPUT_NAME: batch.astype(self.input_dtype, copy=False)}
        try:
            source_1, source_2 = self.session.run(list(OUTPUT_NAMES), feed)
        except Exception as error:  # onnxruntime's errors share no base class below Exception
            raise RunnerError(
                f"{self.path} failed on a batch of shape {list(batch.shape)} ({one_line(error)}): "
                "re-export the model"
            ) from None
        return source_1.astype(np.float32, copy=False), source_2.astype(np.float32, copy=False)


def load_model(path, threads: int | None = None) -> Model:
    """Read the sidecar, check the ONNX file's sha256 against it, then open an onnxruntime session."""
    path = Path(path)
    if not path.is_file():
        raise RunnerError(f"model {path} does not exist: pass --model an exported .onnx file or run `runner export --best`")
    info = read_sidecar(path)
    verify(path, info)  # before onnxruntime parses a single byte of it
    session = _open_session(path, threads or os.cpu_count() or 1)
    return Model(
        path=path,
        session=session,
        channels=info["channels"],
        image_size=tuple(info["image_size"]),
        size_multiple=info["size_multiple"],
        dynamic_spatial=info["dynamic_spatial"],
        input_dtype=_checked_input_dtype(session, path),
        info=info,
    )


def prepare_batch(images: Sequence[np.ndarray], model: Model) -> np.ndarray:
    """Stack [C, H, W] images into one [N, C, H', W'] batch, edge-padded to a size the model takes.

    Padding goes at the bottom and right, so `[..., :H, :W]` of each output is its image.
    """
    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    padded_height, padded_width = model.padded_size(height, width)
    batch = np.empty((len(images), model.channels, padded_height, padded_width), dtype=np.float32)
    for slot, image in zip(batch, images):
        _, h, w = image.shape
        slot[:, :h, :w] = image
        slot[:, h:, :w] = slot[:, h - 1 : h, :w]
        slot[:, :, w:] = slot[:, :, w - 1 : w]
    return batch


def batches(sizes: dict, model: Model, batch_size: int) -> Iterator[list]:
    """Group keys of `sizes` ({key: (width, height)}) into runs of one padded size, at most
    `batch_size` each and fewer for large images, so one batch never needs much memory."""
    by_size: dict[tuple[int, int], list] = {}
    for key, (width, height) in sizes.items():
        by_size.setdefault(model.padded_size(height, width), []).append(key)
    for (height, width), keys in by_size.items():
        chunk = max(1, min(batch_size, BATCH_PIXEL_BUDGET // (height * width)))
        for start in range(0, len(keys), chunk):
            yield keys[start : start + chunk]


def one_line(text) -> str:
    return " ".join(str(text).split())


def _open_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # sequential execution never uses the inter-op pool
    options.log_severity_level = 3  # errors only: onnxruntime's warnings would add lines to stderr
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's errors share no base class below Exception
        raise RunnerError(
            f"onnxruntime cannot load {path} ({one_line(error)}): re-export it with `runner export --best`"
        ) from None


def _checked_input_dtype(session: ort.InferenceSession, path: Path) -> np.dtype:
    inputs = {node.name: node.type for node in session.get_inputs()}
    outputs = {node.name for node in session.get_outputs()}
    dtypes = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}
    if set(inputs) != {INPUT_NAME} or not set(OUTPUT_NAMES) <= outputs or inputs[INPUT_NAME] not in dtypes:
        raise RunnerError(
            f"{path} is not a separation model (it takes {sorted(inputs)} and gives {sorted(outputs)}, "
            f"not float {INPUT_NAME!r} -> {' and '.join(OUTPUT_NAMES)}): export it with `runner export`"
        )
    return dtypes[inputs[INPUT_NAME]]
