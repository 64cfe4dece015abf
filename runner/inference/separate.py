"""The `separate` command: split averaged images m = (a + b) / 2 back into a and b.

Owns everything between image files and an exported model: finding the model and
checking it against its sidecar (`find_default_model`, `load_model`), reading images
into the model's channels (`read_image`), padding and batching them (`prepare_batch`),
running the model (`Model.run`) and writing `<stem>_1.png` and `<stem>_2.png`
atomically (`to_pixels`, `write_png`). A benchmark that calls these runs exactly the
command's code path.

Imports numpy, Pillow and onnxruntime only (rich lazily, for the progress bar): a plain
`pip install` runs it, and nothing from the training side slows its start.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, UnidentifiedImageError

from runner.inference import sidecar
from runner.errors import RunnerError
from runner.files import IMAGE_SUFFIXES, write_atomic

INPUT_NAME = "mixture"
OUTPUT_NAMES = ("source_1", "source_2")
MODE_OF_CHANNELS = {1: "L", 3: "RGB"}
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # Pillow clips these at 255 when converting to L
DEFAULT_MODELS_DIR = Path("export")
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_PIXELS = 4096 * 4096  # per image, checked from the header before decoding
BATCH_PIXEL_BUDGET = 4096 * 4096  # large images run in smaller batches so memory stays bounded
PROGRESS_MIN_INPUTS = 5  # fewer finish before a progress bar is worth drawing
PNG_COMPRESS_LEVEL = 1  # Pillow's default 6 encodes 256x256 about 4x slower for files ~15% smaller


class BadImage(RunnerError):
    """One input that cannot be separated; the others still are."""


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
                f"{self.path} failed on a batch of shape {list(batch.shape)} ({_one_line(error)}): "
                "re-export the model"
            ) from None
        return source_1.astype(np.float32, copy=False), source_2.astype(np.float32, copy=False)


def find_default_model(models_dir: Path) -> Path:
    """The newest .onnx in models_dir that has its sidecar beside it."""
    models_dir = Path(models_dir)
    exported = [path for path in models_dir.glob("*.onnx") if sidecar.sidecar_path(path).is_file()]
    if not exported:
        raise RunnerError(
            f"no exported model (NAME.onnx with NAME.json) in {models_dir}/: "
            "run `runner export --best` or pass --model"
        )
    return max(exported, key=lambda path: (path.stat().st_mtime_ns, path.name))


def load_model(path, threads: int | None = None) -> Model:
    """Read the sidecar, check the ONNX file's sha256 against it, then open an onnxruntime session."""
    path = Path(path)
    if not path.is_file():
        raise RunnerError(f"model {path} does not exist: pass --model an exported .onnx file or run `runner export --best`")
    info = sidecar.read_sidecar(path)
    sidecar.verify(path, info)  # before onnxruntime parses a single byte of it
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


def collect_inputs(paths: Sequence) -> list[Path]:
    """The image files named: files as given, folders as their images, sorted."""
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise RunnerError(f"folder {path} holds no images ({' '.join(IMAGE_SUFFIXES)}): pass another folder")
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise RunnerError(f"{path} does not exist: pass image files or folders of images")
    return images


def output_paths(images: Sequence[Path], out_dir: Path) -> dict[Path, tuple[Path, Path]]:
    """Each image's two output files, refusing two images that would write the same ones."""
    outputs, owner_of_stem = {}, {}
    for image in images:
        key = image.stem.casefold()  # Cat.png and cat.png collide on macOS and Windows
        if key in owner_of_stem:
            raise RunnerError(
                f"{owner_of_stem[key]} and {image} would both write {out_dir / image.stem}_1.png: "
                "rename one or separate them in two runs"
            )
        owner_of_stem[key] = image
        outputs[image] = (out_dir / f"{image.stem}_1.png", out_dir / f"{image.stem}_2.png")
    return outputs


def read_size(path: Path, model: Model, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header, refusing sizes the model or --max-pixels rule out."""
    with _bad_image_errors(path):
        with Image.open(path) as image:
            _check_size(image.size, model, max_pixels)
            return image.size


def read_image(path: Path, model: Model, max_pixels: int) -> np.ndarray:
    """The image as float32 [C, H, W] in [0, 1], with the model's channels."""
    with _bad_image_errors(path):
        with Image.open(path) as image:
            _check_size(image.size, model, max_pixels)
            if image.mode in WIDE_MODES:
                image.load()
                decoded = image.copy()
            else:
                decoded = _converted(image, model.mode)
    if decoded.mode in WIDE_MODES:
        return _wide_to_array(decoded, model.channels)
    pixels = np.asarray(decoded, dtype=np.float32) / np.float32(255)
    return pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


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


def to_pixels(source: np.ndarray, height: int, width: int) -> np.ndarray:
    """One [C, H', W'] model output cropped to height x width, as uint8 [C, H, W]."""
    cropped = source[:, :height, :width]
    return np.rint(np.clip(cropped, 0.0, 1.0) * 255).astype(np.uint8)


def write_png(pixels: np.ndarray, target: Path) -> None:
    """Save uint8 [C, H, W] pixels as a PNG, atomically: no half-written PNG is ever seen."""
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    try:
        write_atomic(target, lambda file: image.save(file, format="PNG", compress_level=PNG_COMPRESS_LEVEL))
    except OSError as error:
        raise RunnerError(f"cannot write {target} ({error.strerror or error}): check free space and permissions") from None


def separate_images(
    outputs: dict[Path, tuple[Path, Path]],
    model: Model,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_error: Callable[[Path, BadImage], None],
    on_done: Callable[[], None] = lambda: None,
) -> int:
    """Separate each image into its two output files; returns how many images failed.

    Images of the same padded size run together. `on_error` hears about each bad image,
    `on_done` about each image finished either way.
    """
    failures = 0
    by_size: dict[tuple[int, int], list[Path]] = {}
    for path in outputs:
        try:
            width, height = read_size(path, model, max_pixels)
        except BadImage as error:
            failures += 1
            on_error(path, error)
            on_done()
            continue
        by_size.setdefault(model.padded_size(height, width), []).append(path)

    for (height, width), paths in by_size.items():
        chunk = max(1, min(batch_size, BATCH_PIXEL_BUDGET // (height * width)))
        for start in range(0, len(paths), chunk):
            failures += _separate_batch(paths[start : start + chunk], outputs, model, max_pixels, on_error, on_done)
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    """Run `separate`; returns the exit status: 0 all separated, 1 some inputs failed, 2 stopped.

    2 is what `runner` and argparse return for a mistake that stops the whole run; 1 means
    the run went on and only the images named on stderr have no outputs.
    """
    args = _parse_args(argv)
    try:
        return _run(args)
    except RunnerError as error:
        _print_error(str(error))
        return 2
    except KeyboardInterrupt:
        _print_error("interrupted; every output written so far is complete")
        return 130


def _run(args: argparse.Namespace) -> int:
    images = collect_inputs(args.images)
    outputs = output_paths(images, args.output)
    if not args.overwrite:
        _refuse_existing(outputs)
    _prepare_out_dir(args.output)
    model = load_model(args.model or find_default_model(args.models_dir), args.threads)

    def report(path: Path, error: BadImage) -> None:
        _print_error(f"{path}: {error}")

    with _progress(len(images)) as advance:
        failures = separate_images(
            outputs, model, batch_size=args.batch_size, max_pixels=args.max_pixels, on_error=report, on_done=advance
        )
    done = len(images) - failures
    print(f"separated {done} of {len(images)} images into {args.output}/")
    return 1 if failures else 0


def _separate_batch(
    paths: list[Path],
    outputs: dict[Path, tuple[Path, Path]],
    model: Model,
    max_pixels: int,
    on_error: Callable[[Path, BadImage], None],
    on_done: Callable[[], None],
) -> int:
    images, readable = [], []
    for path in paths:
        try:
            images.append(read_image(path, model, max_pixels))
            readable.append(path)
        except BadImage as error:
            on_error(path, error)
            on_done()
    if images:
        source_1, source_2 = model.run(prepare_batch(images, model))
        for index, (path, image) in enumerate(zip(readable, images)):
            _, height, width = image.shape
            first, second = outputs[path]
            write_png(to_pixels(source_1[index], height, width), first)
            write_png(to_pixels(source_2[index], height, width), second)
            on_done()
    return len(paths) - len(images)


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
            f"onnxruntime cannot load {path} ({_one_line(error)}): re-export it with `runner export --best`"
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


def _check_size(size: tuple[int, int], model: Model, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise BadImage(f"it declares a size of {width}x{height}, which holds no pixels")
    if width * height > max_pixels:
        raise BadImage(
            f"{width}x{height} is {width * height:,} pixels, more than --max-pixels {max_pixels:,}: "
            "shrink it or raise --max-pixels"
        )
    problem = model.size_problem(width, height)
    if problem:
        raise BadImage(problem)


@contextmanager
def _bad_image_errors(path: Path) -> Iterator[None]:
    """Turn whatever Pillow raises on a bad file into BadImage, and keep its warnings off stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. DecompressionBombWarning: our own size check already ran
        try:
            yield
        except BadImage:
            raise
        except Image.DecompressionBombError as error:
            raise BadImage(f"too large to decode safely ({_one_line(error)}): shrink it") from None
        except UnidentifiedImageError:
            problem = "the file is empty" if _is_empty(path) else "not an image Pillow can read"
            raise BadImage(problem) from None
        except OSError as error:
            if error.errno is not None:  # the file system's complaint, not the decoder's
                raise BadImage(f"cannot read it ({_one_line(error.strerror)})") from None
            raise BadImage(f"broken or truncated image ({_one_line(error)})") from None
        except Exception as error:  # Pillow's decoders also raise SyntaxError, ValueError, struct.error, ... on bad data
            raise BadImage(f"cannot decode it ({type(error).__name__}: {_one_line(error)})") from None


def _converted(image: Image.Image, mode: str) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError:  # Pillow converts some modes (LAB) only to RGB
        return image.convert("RGB").convert(mode)


def _wide_to_array(image: Image.Image, channels: int) -> np.ndarray:
    scale = 1.0 if image.mode == "F" else 65535.0  # integer modes hold 16-bit samples
    gray = np.clip(np.asarray(image, dtype=np.float32) / np.float32(scale), 0.0, 1.0)
    return np.repeat(gray[np.newaxis], channels, axis=0)


def _refuse_existing(outputs: dict[Path, tuple[Path, Path]]) -> None:
    for pair in outputs.values():
        for target in pair:
            if target.exists():
                raise RunnerError(f"{target} already exists: pass --overwrite to replace it, or choose another -o")


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunnerError(f"output folder {out_dir} is a file: pass -o a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / f".separate-probe-{secrets.token_hex(8)}", "xb") as probe:
            os.unlink(probe.name)
    except OSError as error:
        raise RunnerError(f"cannot write to {out_dir} ({error.strerror or error}): pass -o a folder you can write") from None


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    if total < PROGRESS_MIN_INPUTS or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console  # here, not at the top: most runs draw no bar and start faster without rich
    from rich.progress import Progress

    # soft_wrap: error lines printed under the bar stay one line each, however narrow the terminal
    with Progress(console=Console(stderr=True, soft_wrap=True), transient=True) as progress:
        task = progress.add_task("separating", total=total)
        yield lambda: progress.advance(task)


def _print_error(message: str) -> None:
    print(f"separate: error: {_one_line(message)}", file=sys.stderr)  # sys.stderr looked up now: rich may wrap it


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="separate",
        description="Split averaged images m = (a + b) / 2 back into a and b with an exported model.",
        epilog="Writes DIR/<stem>_1.png and DIR/<stem>_2.png for each input. "
        "Exit status 0 when every input was separated; 1 when some inputs failed (each named on stderr, "
        "the others still separated); 2 when the run was refused or stopped (a bad flag, no model or one that "
        "fails its sha256 check, an output folder that cannot be written, outputs that exist without --overwrite).",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders of images")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder for the outputs (created)")
    parser.add_argument("--model", type=Path, help="exported .onnx with its .json beside it (default: newest in --models-dir)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR, help="where to look for models (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, help="images per model call (default: %(default)s)")
    parser.add_argument("--threads", type=_positive_int, help="onnxruntime threads (default: all CPU cores)")
    parser.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (default: %(default)s)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
