"""Image datasets on disk, read into uint8 numpy arrays.

This module owns everything between a dataset name and its pixels: where a dataset may
live (`--data-dir`, `$RUNNER_DATA_DIR`, Debian's Fashion-MNIST package, the user cache),
downloading it there with an md5 check when it is nowhere, the file formats (CIFAR-10
python batches, the IDX files of MNIST and Fashion-MNIST, a folder of images), and the
channel and size conversions every source shares. It imports no torch: pairing images
into mixtures and making tensors belong to `runner.data.sampler`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from runner.errors import RunnerError
from runner.files import IMAGE_SUFFIXES

DATASETS: tuple[str, ...] = ("cifar10", "fashion-mnist", "mnist", "folder")
SPLITS: tuple[str, ...] = ("train", "test")

FOLDER_IMAGE_SIZE = 64        # folder images come in any size; they are cut to this square
FOLDER_TEST_PERCENT = 10      # share of a folder without train/ and test/ that is the test split
DOWNLOAD_TIMEOUT_S = 30       # per network operation, not for the whole file
DATA_DIR_ENV = "RUNNER_DATA_DIR"
CORRUPT_DETAIL_CHARS = 120    # of a parser's message quoted in a corrupt-file error

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(digit) for digit in range(10))

_FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# Where each dataset comes from, as (url, md5) with the md5 its publisher gives.
DOWNLOADS: dict[str, tuple[tuple[str, str], ...]] = {
    "cifar10": (
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    ),
    "fashion-mnist": (
        (_FASHION_MNIST_URL + "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        (_FASHION_MNIST_URL + "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        (_FASHION_MNIST_URL + "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        (_FASHION_MNIST_URL + "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    "mnist": (
        (_MNIST_URL + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        (_MNIST_URL + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        (_MNIST_URL + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        (_MNIST_URL + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}


@dataclass(frozen=True, eq=False)
class Images:
    """One split of a dataset: every image, and its label where the dataset has them."""

    pixels: np.ndarray                  # uint8 [N, C, H, W]
    labels: np.ndarray | None           # int64 [N]; None for a folder of images
    classes: tuple[str, ...] | None     # label -> class name, when known


def load_images(
    dataset: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    channels: int | None = None,
    image_size: int | None = None,
) -> Images:
    """Read one split of `dataset`, downloading it first if it is nowhere on disk.

    `channels` None keeps the dataset's own (3 for cifar10 and folder, 1 for the MNISTs);
    `image_size` None keeps the native size (folder: FOLDER_IMAGE_SIZE). The arrays
    returned are the caller's own to modify.
    """
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("split", split, SPLITS)
    _check_conversion(channels, image_size)
    if dataset == "folder":
        return _load_folder(data_dir, split, channels or 3, image_size or FOLDER_IMAGE_SIZE)
    source = _SOURCES[dataset]
    native = source.read(_locate(dataset, source, split, data_dir), split)
    return _convert(native, channels, image_size)


def download(url: str, md5: str, destination: str | os.PathLike) -> Path:
    """Fetch `url` to `destination` if its md5 matches; on any failure nothing is left behind.

    The bytes go to a temporary file beside `destination` and are renamed into place
    only once complete and checked, so a reader never sees half a file.
    """
    destination = Path(destination)
    _make_dir(destination.parent)
    partial = tempfile.NamedTemporaryFile(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part", delete=False
    )
    try:
        with partial:
            digest = _stream(url, partial)
        if digest != md5:
            raise RunnerError(
                f"{url} arrived with md5 {digest}, expected {md5}; the transfer was corrupted "
                "or the file changed upstream: try again, or fetch it by hand"
            )
        os.replace(partial.name, destination)
    except BaseException:
        Path(partial.name).unlink(missing_ok=True)
        raise
    return destination


# --- arguments ------------------------------------------------------------------------


def _check_choice(what: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        raise RunnerError(f"unknown {what} {value!r}; choose one of: {', '.join(known)}")


def _check_conversion(channels: int | None, image_size: int | None) -> None:
    if channels not in (None, 1, 3):
        raise RunnerError(
            f"channels must be 1 or 3, got {channels!r}; leave it unset to keep the dataset's own"
        )
    if image_size is not None and image_size < 1:
        raise RunnerError(f"image_size must be a positive number of pixels, got {image_size!r}")


# --- the datasets that come as files: where they are, how to read them -----------------


@dataclass(frozen=True)
class _Source:
    split_files: dict[str, tuple[str, ...]]     # split -> the files that make it up
    subfolders: tuple[str, ...]                 # where under a search root the files may sit
    read: Callable[[Path, str], Images]         # (folder holding the files, split) -> Images
    fetch: Callable[[Path], None]               # fill a cache folder from the internet
    system_dir: Path | None                     # where a distribution package installs it
    fix: str                                    # what to do when it is nowhere


def _locate(dataset: str, source: _Source, split: str, data_dir: str | os.PathLike | None) -> Path:
    """The folder that holds `split` of `dataset`, downloading into the cache as a last resort."""
    places = _search_places(source, data_dir)
    for _, root in places:
        if root is not None and (folder := _holding_folder(root, source, split)):
            return folder
    cache = _cache_dir(dataset)
    if folder := _holding_folder(cache, source, split):
        return folder
    try:
        source.fetch(cache)
    except RunnerError as error:
        searched = ", ".join([label for label, _ in places] + [str(cache)])
        raise RunnerError(
            f"{dataset} not found in: {searched}; download failed ({error}). {source.fix}"
        ) from None
    if folder := _holding_folder(cache, source, split):
        return folder
    raise RunnerError(
        f"the download of {dataset} into {cache} lacks the {split} files; delete {cache} and run again"
    )


def _search_places(source: _Source, data_dir: str | os.PathLike | None) -> list[tuple[str, Path | None]]:
    """Where a user may have put the dataset, in the order tried, each labelled for errors."""
    from_env = os.environ.get(DATA_DIR_ENV) or None
    places = [
        _user_place("--data-dir", data_dir, "not given"),
        _user_place(f"${DATA_DIR_ENV}", from_env, "unset"),
    ]
    if source.system_dir is not None:
        places.append((str(source.system_dir), source.system_dir))
    return places


def _user_place(name: str, value: str | os.PathLike | None, absent: str) -> tuple[str, Path | None]:
    if value is None:
        return f"{name} ({absent})", None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise RunnerError(f"{name} {path} is not a folder; fix the path or leave {name} out")
    if not any(path.iterdir()):
        raise RunnerError(f"{name} {path} is empty; put the dataset there or leave {name} out")
    return f"{name} {path}", path


def _holding_folder(root: Path, source: _Source, split: str) -> Path | None:
    for folder in (root, *(root / sub for sub in source.subfolders)):
        if all((folder / name).is_file() for name in source.split_files[split]):
            return folder.resolve()
    return None


def _cache_dir(dataset: str) -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "separation-runner" / dataset


def _convert(images: Images, channels: int | None, image_size: int | None) -> Images:
    """A writable copy of `images` with the channels and size asked for."""
    pixels = images.pixels
    if image_size is not None and pixels.shape[2:] != (image_size, image_size):
        pixels = _resize(pixels, image_size)
    if channels == 1 and pixels.shape[1] == 3:
        pixels = _rgb_to_gray(pixels)
    elif channels == 3 and pixels.shape[1] == 1:
        pixels = np.repeat(pixels, 3, axis=1)
    labels = None if images.labels is None else images.labels.copy()
    # The cached arrays are read-only and shared; only new arrays go to the caller as they are.
    if pixels is images.pixels:
        pixels = pixels.copy()
    return Images(pixels, labels, images.classes)


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    resized = np.empty((*pixels.shape[:2], size, size), dtype=np.uint8)
    for index, image in enumerate(pixels):
        for channel, plane in enumerate(image):
            resized[index, channel] = Image.fromarray(plane).resize((size, size), Image.Resampling.BILINEAR)
    return resized


# PIL's ITU-R 601-2 luma weights in 16-bit fixed point, with its rounding, so the result
# matches Image.convert("L") exactly while converting every image at once.
_LUMA_WEIGHTS = (np.uint32(19595), np.uint32(38470), np.uint32(7471))


def _rgb_to_gray(pixels: np.ndarray) -> np.ndarray:
    luma = np.full((pixels.shape[0], *pixels.shape[2:]), 1 << 15, dtype=np.uint32)
    for channel, weight in enumerate(_LUMA_WEIGHTS):
        luma += pixels[:, channel] * weight
    return (luma >> 16).astype(np.uint8)[:, None]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _corrupt(path: Path, problem: object) -> RunnerError:
    # A parser's message may quote the file's own bytes: keep it to one printable line.
    detail = "".join(c if c.isprintable() else "?" for c in " ".join(str(problem).split()))
    if len(detail) > CORRUPT_DETAIL_CHARS:
        detail = detail[:CORRUPT_DETAIL_CHARS] + "..."
    return RunnerError(
        f"{path} is corrupt ({detail}); delete it to re-download, or replace it with a good copy"
    )


# --- CIFAR-10: python pickles of 10,000-row batches ------------------------------------

_CIFAR10_SPLIT_FILES = {
    "train": tuple(f"data_batch_{number}" for number in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR10_ROW = 3 * 32 * 32      # 1024 red, then 1024 green, then 1024 blue values


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a batch file can run no other code."""

    _ALLOWED = {
        ("_codecs", "encode"),      # how Python 3 writes bytes into a protocol-2 pickle
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    with path.open("rb") as file:
        try:
            content = _ArrayUnpickler(file, encoding="bytes").load()
        # A damaged pickle fails in many ways (EOFError, UnpicklingError, ValueError, ...).
        except Exception as error:
            raise _corrupt(path, error) from None
    if not isinstance(content, dict):
        raise _corrupt(path, f"a {type(content).__name__} where a dict was expected")
    return content


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or b"labels" not in batch:
        raise _corrupt(path, "no data or labels in it")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR10_ROW:
        raise _corrupt(path, f"data is {data.dtype} {list(data.shape)}, expected uint8 [N, {_CIFAR10_ROW}]")
    if labels.shape != (len(data),) or not np.all((labels >= 0) & (labels < len(CIFAR10_CLASSES))):
        raise _corrupt(path, f"{labels.size} labels for {len(data)} images, or labels outside 0-9")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar10_classes(folder: Path) -> tuple[str, ...]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return CIFAR10_CLASSES
    names = _unpickle(meta_path).get(b"label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        raise _corrupt(meta_path, "no list of 10 label_names in it")
    return tuple(name.decode() for name in names)


@functools.lru_cache(maxsize=8)
def _read_cifar10(folder: Path, split: str) -> Images:
    batches = [_read_cifar10_batch(folder / name) for name in _CIFAR10_SPLIT_FILES[split]]
    pixels = np.concatenate([pixels for pixels, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return Images(_read_only(pixels), _read_only(labels), _cifar10_classes(folder))


def _fetch_cifar10(cache: Path) -> None:
    """Download the official archive into `cache` and unpack its cifar-10-batches-py there."""
    ((url, md5),) = DOWNLOADS["cifar10"]
    archive = download(url, md5, cache / _file_name(url))
    with tempfile.TemporaryDirectory(dir=cache, prefix=".unpacking-") as unpacked:
        _extract(archive, Path(unpacked))
        extracted = Path(unpacked) / CIFAR10_FOLDER
        if not extracted.is_dir():
            raise _corrupt(archive, f"no {CIFAR10_FOLDER} folder in it")
        target = cache / CIFAR10_FOLDER
        if target.exists():     # an incomplete copy, or it would have been found
            shutil.rmtree(target)
        os.replace(extracted, target)
    archive.unlink()


def _extract(archive: Path, destination: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # "data" refuses absolute paths, links out of the folder and device files.
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise _corrupt(archive, error) from None


# --- MNIST and Fashion-MNIST: gzipped IDX files ---------------------------------------

_IDX_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_UNSIGNED_BYTE = 0x08


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: 2 zero bytes, the type, ndim, big-endian int32 dims, data."""
    try:
        with gzip.open(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt(path, error) from None
    header_size = 4 + 4 * ndim
    if len(raw) < header_size or raw[:4] != bytes((0, 0, _IDX_UNSIGNED_BYTE, ndim)):
        raise _corrupt(path, f"not an IDX file of unsigned bytes with {ndim} dimensions")
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header_size + math.prod(shape)
    if len(raw) != expected:
        raise _corrupt(path, f"{len(raw)} bytes where its header promises {expected}")
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def _idx_reader(classes: tuple[str, ...]) -> Callable[[Path, str], Images]:
    @functools.lru_cache(maxsize=8)
    def read(folder: Path, split: str) -> Images:
        images_name, labels_name = _IDX_SPLIT_FILES[split]
        pixels = _read_idx(folder / images_name, ndim=3)[:, None]
        labels = _read_idx(folder / labels_name, ndim=1).astype(np.int64)
        if len(labels) != len(pixels):
            raise _corrupt(folder / labels_name, f"{len(labels)} labels for {len(pixels)} images")
        return Images(_read_only(pixels), _read_only(labels), classes)

    return read


def _files_fetcher(dataset: str) -> Callable[[Path], None]:
    def fetch(cache: Path) -> None:
        for url, md5 in DOWNLOADS[dataset]:
            destination = cache / _file_name(url)
            if not destination.is_file():
                download(url, md5, destination)

    return fetch


_SOURCES: dict[str, _Source] = {
    "cifar10": _Source(
        split_files=_CIFAR10_SPLIT_FILES,
        subfolders=(CIFAR10_FOLDER,),
        read=_read_cifar10,
        fetch=_fetch_cifar10,
        system_dir=None,
        fix=f"Pass --data-dir pointing at {CIFAR10_FOLDER}, or run once online",
    ),
    "fashion-mnist": _Source(
        split_files=_IDX_SPLIT_FILES,
        subfolders=("fashion-mnist", "FashionMNIST/raw"),
        read=_idx_reader(FASHION_MNIST_CLASSES),
        fetch=_files_fetcher("fashion-mnist"),
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
        fix="Pass --data-dir pointing at the folder of its four .gz files, "
        "run `apt-get install dataset-fashion-mnist`, or run once online",
    ),
    "mnist": _Source(
        split_files=_IDX_SPLIT_FILES,
        subfolders=("mnist", "MNIST/raw"),
        read=_idx_reader(MNIST_CLASSES),
        fetch=_files_fetcher("mnist"),
        system_dir=None,
        fix="Pass --data-dir pointing at the folder of its four .gz files, or run once online",
    ),
}


# --- downloads ------------------------------------------------------------------------


def _file_name(url: str) -> str:
    return Path(urllib.parse.urlparse(url).path).name


def _make_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunnerError(
            f"cannot create {folder} ({error.strerror}); "
            "set XDG_CACHE_HOME to a writable folder or pass --data-dir"
        ) from None


def _stream(url: str, sink) -> str:
    """Copy `url` into `sink` chunk by chunk; return the md5 of what came."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                sink.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
        raise RunnerError(
            f"cannot download {url} ({_network_reason(error)}); check the connection and try again"
        ) from None
    return digest.hexdigest()


def _network_reason(error: Exception) -> object:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return error.reason
    return error


# --- a folder of images -----------------------------------------------------------------


def _load_folder(data_dir: str | os.PathLike | None, split: str, channels: int, size: int) -> Images:
    if data_dir is None:
        raise RunnerError("the folder dataset needs --data-dir pointing at a folder of images")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise RunnerError(f"--data-dir {root} is not a folder; point it at a folder of images")
    files = _folder_split(root, split)
    if not files:
        suffixes = " ".join(IMAGE_SUFFIXES)
        raise RunnerError(
            f"no {split} images ({suffixes}) under {root}; add some or point --data-dir elsewhere"
        )
    pixels = np.stack([_read_image(path, channels, size) for path in files])
    return Images(pixels, None, None)


def _folder_split(root: Path, split: str) -> list[Path]:
    """The images of `split`: train/ and test/ when the folder has both, else a hash split."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _image_files(root / split)
    return [path for path in _image_files(root) if _hash_split(path.relative_to(root)) == split]


def _image_files(folder: Path) -> list[Path]:
    """Every image under `folder`, sorted; hidden files and folders are left out."""
    return sorted(
        path for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )


def _hash_split(relative_path: Path) -> str:
    # A checksum of the path rather than a random draw: the split survives restarts and
    # machines, and adding or removing other files never moves this one.
    bucket = zlib.crc32(relative_path.as_posix().encode()) % 100
    return "test" if bucket < FOLDER_TEST_PERCENT else "train"


def _read_image(path: Path, channels: int, size: int) -> np.ndarray:
    """One image as uint8 [C, size, size]: shorter side scaled to `size`, centre cropped."""
    try:
        with Image.open(path) as image:
            # Phone photos are often stored sideways with an EXIF flag saying how to turn them.
            upright = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise RunnerError(f"cannot read image {path} ({error}); delete or replace it") from None
    square = np.asarray(ImageOps.fit(upright, (size, size), Image.Resampling.BILINEAR))
    return square[None] if channels == 1 else square.transpose(2, 0, 1)
