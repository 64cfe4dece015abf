"""The sidecar JSON beside an exported model: what `separate` needs to know to feed it.

`export/NAME.onnx` travels with `export/NAME.json`. The exporter writes the sidecar with
`write_sidecar`; `separate` reads it with `read_sidecar` and checks the ONNX file against
its sha256 with `verify` before handing the file to onnxruntime. The keys `separate`
relies on are `REQUIRED_KEYS`; `dataset`, `image_size`, `channels` and `metrics.val_pit_psnr`
decide whether an export may become the default (`catalog.offer_default`); the rest (family,
cost, latency_ms, experiment, trial, opset, precision, exported_at) are there for people and
`separate --list-models`. Standard library only: `separate` imports this.
"""

import hashlib
import json
from pathlib import Path

from runner.errors import RunnerError
from runner.files import write_json_atomic

SIDECAR_FORMAT = 1  # bump when a reader of the old format would misread the new one
REQUIRED_KEYS = ("channels", "image_size", "size_multiple", "dynamic_spatial")
SUPPORTED_CHANNELS = (1, 3)


def sha256_of(path) -> str:
    """Hex sha256 of a file, read in chunks so a large model needs no large buffer."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(onnx_path) -> Path:
    """NAME.onnx -> NAME.json, in the same folder."""
    return Path(onnx_path).with_suffix(".json")


def write_sidecar(onnx_path, info: dict) -> Path:
    """Write NAME.json for NAME.onnx: `info` plus format, file name and sha256.

    Written to a temporary file and renamed, so a reader never sees half a sidecar.
    """
    onnx_path = Path(onnx_path)
    missing = [key for key in REQUIRED_KEYS if key not in info]
    if missing:
        raise ValueError(f"sidecar info lacks {', '.join(missing)}; it needs all of {', '.join(REQUIRED_KEYS)}")
    sidecar = {
        "format": SIDECAR_FORMAT,
        **info,
        "onnx_file": onnx_path.name,
        "sha256": sha256_of(onnx_path),
    }
    target = sidecar_path(onnx_path)
    write_json_atomic(target, sidecar, sort_keys=True)
    return target


def read_sidecar(onnx_path) -> dict:
    """The sidecar of NAME.onnx as a dict, its required keys checked."""
    path = sidecar_path(onnx_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunnerError(
            f"{path} is missing: {Path(onnx_path).name} needs its sidecar; "
            "re-export the model with `runner export --best`"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise RunnerError(f"cannot read {path} ({error}): re-export the model") from None
    try:
        sidecar = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunnerError(f"{path} is not valid JSON ({error}): re-export the model") from None
    if not isinstance(sidecar, dict):
        raise RunnerError(f"{path} is not a JSON object: re-export the model")
    _check_sidecar(sidecar, path)
    return sidecar


def verify(onnx_path, sidecar: dict) -> None:
    """Refuse an ONNX file whose bytes are not the ones the sidecar describes."""
    onnx_path = Path(onnx_path)
    name = sidecar_path(onnx_path).name
    expected = sidecar.get("sha256")
    if not isinstance(expected, str):
        raise RunnerError(f"{name} has no sha256 for {onnx_path.name}: re-export the model")
    try:
        actual = sha256_of(onnx_path)
    except FileNotFoundError:
        raise RunnerError(f"model file {onnx_path} does not exist: pass --model with an exported .onnx file") from None
    except OSError as error:
        raise RunnerError(f"cannot read {onnx_path} ({error.strerror or error})") from None
    if actual != expected.lower():
        raise RunnerError(
            f"refusing to load {onnx_path}: its sha256 does not match {name}; re-export it or restore the file"
        )


def _check_sidecar(sidecar: dict, path: Path) -> None:
    def bad(what: str) -> RunnerError:
        return RunnerError(f"{path}: {what}; re-export the model")

    missing = [key for key in REQUIRED_KEYS if key not in sidecar]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    version = sidecar.get("format", SIDECAR_FORMAT)
    if not _is_int(version) or version > SIDECAR_FORMAT:
        raise RunnerError(
            f"{path} is sidecar format {version!r}, newer than this version reads ({SIDECAR_FORMAT}): "
            "upgrade separation-runner"
        )
    if not (_is_int(sidecar["channels"]) and sidecar["channels"] in SUPPORTED_CHANNELS):
        raise bad(f"channels must be 1 or 3, got {sidecar['channels']!r}")
    size = sidecar["image_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(n) and n > 0 for n in size)):
        raise bad(f"image_size must be [height, width], got {size!r}")
    if not (_is_int(sidecar["size_multiple"]) and sidecar["size_multiple"] > 0):
        raise bad(f"size_multiple must be a positive integer, got {sidecar['size_multiple']!r}")
    if not isinstance(sidecar["dynamic_spatial"], bool):
        raise bad(f"dynamic_spatial must be true or false, got {sidecar['dynamic_spatial']!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a size

