"""Checkpoint -> ONNX: rebuild from the checkpoint alone, export, check, compare, then publish.

The export lands in a temporary directory first; `onnx.checker` and an onnxruntime vs.
torch parity check on real validation mixtures must pass before the `.onnx` and its
sidecar `.json` are moved into the output directory. A failure leaves nothing behind.

`precision="int8"` or `"fp16"` converts the checked fp32 export (int8: onnxruntime's static
QDQ quantization, per-channel weights, calibrated on the validation mixtures; fp16:
weights and activations in half precision, float32 input and outputs). The converted
model's outputs must agree with the fp32 model's to at least `PRECISION_MIN_PSNR` dB.

`export_within` picks what fits: the best-scoring trial whose recorded cost (parameters,
multiply-accumulates) is within the limits, and, with a latency limit, whose published
file runs a batch-1 image at its training size within it on onnxruntime, timed as
`separate` runs it on this machine's threads. Trials are tried best-scoring first, so no
better-scoring trial within the limits is passed over.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from runner.training.checkpoint import load_checkpoint, rebuild_model
from runner.config import TrialConfig
from runner.errors import RunnerError
from runner.counts import format_count, parse_count
from runner.models.cost import COST_KEYS, model_cost
from runner.scoring import psnr
from runner.results import CheckpointInfo, best_checkpoint, best_per_trial
from runner.inference.sidecar import sidecar_path, write_sidecar

OPSET = 18
PARITY_TOLERANCE = 1e-4
PARITY_PAIRS = 64
PRECISIONS = ("fp32", "fp16", "int8")  # fp32 is the exact export; the others are converted from it
PRECISION_MIN_PSNR = 30.0  # dB, int8/fp16 outputs against the fp32 model's on validation mixtures
COST_NAMES = {"params": "parameters", "macs": "MACs"}  # the recorded costs --max-params and --max-macs limit, in words
LATENCY_WARMUP, LATENCY_RUNS = 5, 30  # untimed runs first (onnxruntime allocates on the first), then the median


def trial_checkpoint(directory: Path, trial: str) -> CheckpointInfo:
    """The best checkpoint (by validation PIT-PSNR) of one trial, named by its directory as the summary shows it."""
    best = {checkpoint.trial: checkpoint for checkpoint in best_per_trial(directory)}
    if trial not in best:
        raise RunnerError(
            f"experiment {directory.name} has no trial '{trial}' with a checkpoint; "
            f"its trials with one: {', '.join(sorted(best)) or 'none'}; pass one of them to --trial, or --best"
        )
    return best[trial]


@dataclass(frozen=True)
class Limits:
    """What the exported model may cost (None: no limit); `runner export --max-*`."""

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    def __bool__(self) -> bool:
        return any(limit is not None for limit in (self.max_params, self.max_macs, self.max_latency_ms))

    def sizes(self) -> dict[str, int]:
        """The limits on recorded cost, by cost key."""
        limits = {"params": self.max_params, "macs": self.max_macs}
        return {key: limit for key, limit in limits.items() if limit is not None}

    def excess(self, cost: dict[str, int]) -> float:
        """The largest share of a size limit that `cost` takes: 1 or less fits them all."""
        return max((cost[key] / limit for key, limit in self.sizes().items()), default=0.0)


class TooSlow(RunnerError):
    """The published file of a checkpoint runs slower than --max-latency-ms."""

    def __init__(self, trial: str, latency: dict[str, float], limit: float):
        self.trial, self.latency_ms, self.threads = trial, latency["latency_ms"], latency["latency_threads"]
        super().__init__(f"{trial} takes {self.latency_ms:.3g} ms per image at batch 1 on {self.threads} threads, "
                         f"over --max-latency-ms {limit:g}")


def checkpoint_cost(checkpoint: CheckpointInfo) -> dict[str, int]:
    """The cost recorded with a checkpoint's metrics; counted from the checkpoint itself if it predates the record."""
    if all(key in checkpoint.metrics for key in COST_KEYS):
        return {key: checkpoint.metrics[key] for key in COST_KEYS}
    state = load_checkpoint(checkpoint.path)
    return model_cost(rebuild_model(state), state.input_shape)


def export_within(
    directory: Path, limits: Limits, output_dir: Path, **options
) -> tuple[CheckpointInfo, Path]:
    """Export the best-scoring trial of the experiment at `directory` within `limits`: (its checkpoint, the ONNX path).

    `options` are export_checkpoint's. Trials are tried best-scoring first; the first within
    every limit is exported, so none scoring better within them is passed over. When none
    fits, one RunnerError says what the closest needs, and nothing is written.
    """
    ranked = best_per_trial(directory)
    if not ranked:
        best_checkpoint(directory)  # raises its one line: no finished trial yet
    costs = {checkpoint.trial: checkpoint_cost(checkpoint) for checkpoint in ranked}
    within = [checkpoint for checkpoint in ranked if limits.excess(costs[checkpoint.trial]) <= 1]
    if not within:
        closest = min(ranked, key=lambda checkpoint: limits.excess(costs[checkpoint.trial]))
        needs = " and ".join(f"{format_count(costs[closest.trial][key])} {COST_NAMES[key]}" for key in limits.sizes())
        raise RunnerError(f"no trial of {directory.name} fits {_flags(limits.sizes())}: the smallest needs {needs} "
                          f"({closest.trial}); raise the limit or search smaller models")
    if limits.max_latency_ms is None:
        return within[0], export_checkpoint(within[0], output_dir, **options)
    existed, fastest = output_dir.exists(), None
    for checkpoint in within:
        try:
            return checkpoint, export_checkpoint(checkpoint, output_dir, max_latency_ms=limits.max_latency_ms, **options)
        except TooSlow as slow:
            fastest = slow if fastest is None or slow.latency_ms < fastest.latency_ms else fastest
    if not existed:
        with contextlib.suppress(OSError):
            output_dir.rmdir()  # made for the timed exports, and left empty: nothing was written
    others = f" within {_flags(limits.sizes())}" if limits.sizes() else ""
    which = f"the one trial{others}" if len(within) == 1 else f"the fastest of the {len(within)} trials{others}"
    raise RunnerError(
        f"no trial of {directory.name} fits --max-latency-ms {limits.max_latency_ms:g}: {which} takes "
        f"{fastest.latency_ms:.3g} ms per image at batch 1 on {fastest.threads} threads ({fastest.trial}); "
        "raise the limit or search smaller models"
    )


def _flags(sizes: dict[str, int]) -> str:
    """The limits as flags: short (1.5M) when that is exact, else the whole number given."""
    def text(limit: int) -> str:
        short = format_count(limit)
        return short if parse_count(short) == limit else str(limit)

    return " ".join(f"--max-{key} {text(limit)}" for key, limit in sizes.items())


def export_checkpoint(
    checkpoint: CheckpointInfo,
    output_dir: Path,
    *,
    experiment: str,
    data_dir: str | None = None,
    overwrite: bool = False,
    precision: str = "fp32",
    tta: bool = False,
    max_latency_ms: float | None = None,
) -> Path:
    """Export one checkpoint to `output_dir/<experiment>-<family>[-tta][-<precision>].onnx` (+ `.json`); returns the ONNX path.

    `tta` turns on the model's `model.tta` in the exported file, whatever it trained with: it
    averages the separations of each image and of its mirror image, for twice the compute.

    With `max_latency_ms`, the staged file's batch-1 latency is measured and recorded in the
    sidecar, and a file slower than that is a `TooSlow` error, with nothing published.
    """
    if precision not in PRECISIONS:
        raise RunnerError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    state = load_checkpoint(checkpoint.path)
    if tta:
        state.config["model"]["tta"] = True
    model, config = rebuild_model(state), TrialConfig.from_dict(state.config)
    suffix = ("-tta" if tta else "") + ("" if precision == "fp32" else f"-{precision}")
    target = output_dir / f"{experiment}-{config.model.family}{suffix}.onnx"
    if not overwrite and (target.exists() or sidecar_path(target).exists()):
        raise RunnerError(f"{target} already exists; pass --overwrite to replace it or -o to export elsewhere")
    _prepare_output_dir(output_dir)
    mixtures = validation_mixtures(config, data_dir)

    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as staging:
        staged = Path(staging) / target.name
        export_onnx(model, mixtures[:2], staged)
        check_parity(model, staged, mixtures)
        converted = {}
        if precision != "fp32":
            converted["precision_psnr_vs_fp32"] = round(convert_precision(staged, precision, mixtures), 2)
        info = {
            "channels": state.input_shape[0],
            "image_size": state.input_shape[1:],
            "size_multiple": model.size_multiple,
            "dynamic_spatial": model.dynamic_spatial,
            "family": config.model.family,
            "dataset": state.dataset,
            "metrics": {k: v for k, v in state.metrics.items() if k.startswith("val_")},
            "epoch": state.epoch,
            "experiment": experiment,
            "trial": checkpoint.trial,
            "checkpoint": str(checkpoint.path),
            "opset": OPSET,
            "precision": precision,
            "tta": config.model.tta,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cost": model_cost(model, state.input_shape),
            **converted,
        }
        write_sidecar(staged, info)
        if max_latency_ms is not None:
            latency = measure_latency(staged)
            if latency["latency_ms"] > max_latency_ms:
                raise TooSlow(checkpoint.trial, latency, max_latency_ms)
            write_sidecar(staged, {**info, **latency})
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
            dynamic_shapes={"mixture": axes}, opset_version=OPSET, external_data=False, dynamo=True,
        )
    # The exporter annotates every node with the exporting machine's source paths and stack
    # traces: no use to onnxruntime, most of a small model's file, and local paths in a file
    # that ships. The exporter has no switch for it, so they are dropped here.
    exported = onnx.load(str(path))
    for node in exported.graph.node:
        del node.metadata_props[:]
    onnx.save(exported, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def measure_latency(path: Path) -> dict[str, float]:
    """Median seconds x 1000 of one image at the model's training size, in the session `separate` opens,
    on as many threads as `separate` uses (this machine's CPUs). The model's sidecar must be beside it."""
    from runner.inference.model import load_model

    threads = os.cpu_count() or 1
    model = load_model(path, threads)
    image = np.random.default_rng(0).random((1, model.channels, *model.image_size), dtype=np.float32)
    for _ in range(LATENCY_WARMUP):
        model.run(image)
    seconds = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        model.run(image)
        seconds.append(time.perf_counter() - start)
    return {"latency_ms": round(1000 * statistics.median(seconds), 3), "latency_threads": threads}


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


def convert_precision(path: Path, precision: str, mixtures: torch.Tensor) -> float:
    """Replace the checked fp32 model at `path` by its int8 or fp16 version.

    Returns the PSNR (dB) of the converted model's outputs against the fp32 model's on
    `mixtures`; below `PRECISION_MIN_PSNR` it is a RunnerError and `path` is left as it was.
    """
    import onnx

    converted = path.with_name(f"{path.stem}.{precision}.onnx")
    root_logger, level = logging.getLogger(), logging.getLogger().level
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root_logger.setLevel(logging.ERROR)  # the quantizer logs each step at INFO on the root logger
        try:
            if precision == "int8":
                _quantize_int8(path, converted, mixtures.numpy())
            else:
                from onnxruntime.transformers.float16 import convert_float_to_float16
                from onnxruntime.transformers.onnx_model import OnnxModel

                half = OnnxModel(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True))
                half.topological_sort()  # the converter appends its input casts after their users
                onnx.save(half.model, str(converted))
        finally:
            root_logger.setLevel(level)
    onnx.checker.check_model(str(converted), full_check=True)
    reference, outputs = _run_onnx(path, mixtures.numpy()), _run_onnx(converted, mixtures.numpy())
    agreement = psnr(np.stack(outputs), np.stack(reference))
    if not agreement >= PRECISION_MIN_PSNR:
        raise RunnerError(
            f"the {precision} model's outputs are {agreement:.1f} dB from the fp32 model's (at least "
            f"{PRECISION_MIN_PSNR:g} dB needed); export this model in fp32"
        )
    os.replace(converted, path)
    return agreement


def _quantize_int8(source: Path, target: Path, mixtures: np.ndarray) -> None:
    """Static QDQ quantization: int8 per-channel weights, uint8 activations calibrated on `mixtures`.

    Static rather than dynamic: onnxruntime's dynamic quantization turns convolutions into
    ConvInteger, which measured slower than fp32 here; static QDQ fuses into QLinearConv.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Mixtures(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(np.array_split(mixtures, max(1, len(mixtures) // 16)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"mixture": np.ascontiguousarray(batch)}

    prepared = target.with_name(f"{target.stem}.prepared.onnx")
    # Symbolic shape inference cannot follow the dynamic spatial sizes; ONNX's own inference can.
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(target), Mixtures(),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    prepared.unlink(missing_ok=True)


def _run_onnx(path: Path, mixtures: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [o.astype(np.float32) for o in session.run(["source_1", "source_2"], {"mixture": mixtures})]


def validation_mixtures(config: TrialConfig, data_dir: str | None) -> torch.Tensor:
    """The first validation mixtures of the checkpoint's own dataset."""
    from runner.data.sampler import load_pair_data, make_mixtures

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
