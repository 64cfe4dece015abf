"""Images in and out of a separation model: files, PIL images and numpy arrays as float32
[C, H, W] in [0, 1] with the model's channels, and back.

Files: `read_size` (header only), `read_image`, `to_pixels`, `write_png` (atomic); `unused`
says what of an image is not separated (alpha, later frames).
In memory: `from_memory` takes a PIL image or a uint8/float array and returns the model's
input with a function that turns an output back into the same kind. Every problem with
one image is a `BadImage`, so a caller can skip that image and go on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from runner.errors import RunnerError
from runner.files import IMAGE_SUFFIXES, write_atomic
from runner.inference.model import Model, one_line

WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # Pillow clips these at 255 when converting to L
NO_PIXEL_LIMIT = 1 << 62  # an image already in memory was decoded by its owner: no decompression bomb to guard against
PNG_COMPRESS_LEVEL = 1  # Pillow's default 6 encodes 256x256 about 4x slower for files ~15% smaller


class BadImage(RunnerError):
    """One input that cannot be separated; the others still can be."""


# ---- files ------------------------------------------------------------------------------


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
    """(width, height) from the header, refusing sizes the model or max_pixels rule out."""
    with _bad_image_errors(path):
        with Image.open(path) as image:
            check_size(image.size, model, max_pixels)
            return image.size


def read_image(path: Path, model: Model, max_pixels: int) -> tuple[np.ndarray, str | None]:
    """The image as float32 [C, H, W] in [0, 1], with the model's channels, and what of it
    was not used (`unused`), if anything."""
    with _bad_image_errors(path):
        with Image.open(path) as image:
            check_size(image.size, model, max_pixels)
            return _from_pil(image, model), unused(image)


def unused(image: Image.Image) -> str | None:
    """What of an image the model does not see, in words: its alpha, its later frames; None when nothing."""
    # By hand rather than Image.has_transparency_data, which needs Pillow 10.1 (we take 10.0).
    alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    frames = getattr(image, "n_frames", 1)
    parts = (["its alpha channel was dropped (the colours under it were used as they are)"] if alpha else []) + (
        [f"only the first of its {frames} frames was used"] if frames > 1 else [])
    return "; ".join(parts) or None


def to_pixels(source: np.ndarray) -> np.ndarray:
    """One [C, H, W] model output (cropped to its image), as uint8 [C, H, W]."""
    pixels = np.clip(source, 0.0, 1.0)
    pixels *= 255  # in place: a 16 MP image's float copies are 192 MB each
    return np.rint(pixels, out=pixels).astype(np.uint8)


def write_png(pixels: np.ndarray, target: Path) -> None:
    """Save uint8 [C, H, W] pixels as a PNG, atomically: no half-written PNG is ever seen."""
    image = _pil_from_pixels(pixels)
    try:
        write_atomic(target, lambda file: image.save(file, format="PNG", compress_level=PNG_COMPRESS_LEVEL))
    except OSError as error:
        raise RunnerError(f"cannot write {target} ({error.strerror or error}): check free space and permissions") from None


def check_size(size: tuple[int, int], model: Model, max_pixels: int) -> None:
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


# ---- in memory ----------------------------------------------------------------------------


def from_memory(image, model: Model) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """A PIL image or a numpy array as the model's float32 [C, H, W] input, and the function
    that turns one [C, H, W] output (cropped, unclipped) back into the input's kind.

    PIL images are converted to the model's mode like files are, and come back in it.
    Arrays are H x W (one channel) or H x W x C with the model's channel count: uint8 come
    back as uint8, floats (values in [0, 1]) as the same float type, clipped to [0, 1].
    """
    if isinstance(image, Image.Image):
        check_size(image.size, model, max_pixels=NO_PIXEL_LIMIT)
        return _from_pil(image, model), lambda out: _pil_from_pixels(to_pixels(out))
    if not isinstance(image, np.ndarray):
        raise BadImage(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    pixels = _checked_array(image, model)
    layout = image.shape
    if image.dtype == np.uint8:
        chw = _chw(pixels.astype(np.float32) / np.float32(255))
        return chw, lambda out: to_pixels(out).transpose(1, 2, 0).reshape(layout)
    kind = image.dtype
    return _chw(pixels.astype(np.float32)), lambda out: np.clip(out, 0, 1).transpose(1, 2, 0).reshape(layout).astype(kind)


def _checked_array(image: np.ndarray, model: Model) -> np.ndarray:
    expected = "H x W or H x W x 1" if model.channels == 1 else f"H x W x {model.channels}"
    if image.ndim == 2 and model.channels == 1:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[2] != model.channels:
        raise BadImage(f"the model takes {model.mode} arrays of shape {expected}, got shape {image.shape}: convert it first")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise BadImage(f"arrays must be uint8 (0-255) or float (0-1), got {image.dtype}: convert it first")
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise BadImage("the array holds NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise BadImage(f"float arrays must lie in [0, 1], got values from {low:g} to {high:g}: divide 0-255 values by 255")
    height, width = image.shape[:2]
    check_size((width, height), model, max_pixels=NO_PIXEL_LIMIT)
    return image


def _chw(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _from_pil(image: Image.Image, model: Model) -> np.ndarray:
    if image.mode in WIDE_MODES:
        image.load()
        return _wide_to_array(image.copy(), model.channels)
    pixels = np.asarray(_converted(image, model.mode), dtype=np.float32)
    pixels /= 255  # in place, as in to_pixels
    return pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _pil_from_pixels(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))


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
            raise BadImage(f"too large to decode safely ({one_line(error)}): shrink it") from None
        except UnidentifiedImageError:
            problem = "the file is empty" if _is_empty(path) else "not an image Pillow can read"
            raise BadImage(problem) from None
        except OSError as error:
            if error.errno is not None:  # the file system's complaint, not the decoder's
                raise BadImage(f"cannot read it ({one_line(error.strerror)})") from None
            raise BadImage(f"broken or truncated image ({one_line(error)}): save or copy it again") from None
        except Exception as error:  # Pillow's decoders also raise SyntaxError, ValueError, struct.error, ... on bad data
            raise BadImage(f"cannot decode it ({type(error).__name__}: {one_line(error)})") from None


def _converted(image: Image.Image, mode: str) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError:  # Pillow converts some modes (LAB) only to RGB
        return image.convert("RGB").convert(mode)


def _wide_to_array(image: Image.Image, channels: int) -> np.ndarray:
    scale = 1.0 if image.mode == "F" else 65535.0  # integer modes hold 16-bit samples
    gray = np.clip(np.asarray(image, dtype=np.float32) / np.float32(scale), 0.0, 1.0)
    return np.repeat(gray[np.newaxis], channels, axis=0)


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False
