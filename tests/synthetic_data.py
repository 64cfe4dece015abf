"""Small datasets written in the real on-disk formats, so every plumbing test runs on a fresh clone.

The layouts are the official ones runner/data/sources.py reads: CIFAR-10's python batches
(`cifar-10-batches-py/`), MNIST's and Fashion-MNIST's gzipped IDX files, and a folder of
PNG/JPEG/WebP images. As in torchvision's own dataset tests, the files are made here instead
of downloaded. The images are soft-edged shapes on colour gradients, drawn from a seed: a
model has structure to fit, and every run writes the same bytes. Learning claims need real
images instead (the `real_images` fixture in conftest.py).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))


def smooth_images(count: int, channels: int, size: int, seed: int) -> np.ndarray:
    """uint8 [count, channels, size, size]: a linear colour gradient with two soft-edged shapes on it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    images = np.empty((count, channels, size, size), np.float32)
    for index in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * x + np.sin(angle) * y
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        start, end = rng.uniform(0, 1, (2, channels, 1, 1))
        image = start + (end - start) * ramp
        for _ in range(2):
            (cy, cx), (ry, rx) = rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.35, 2)
            if rng.random() < 0.5:
                outside = np.hypot((y - cy) / ry, (x - cx) / rx) - 1             # an ellipse
            else:
                outside = np.maximum(abs(y - cy) / ry, abs(x - cx) / rx) - 1     # a rectangle
            inside = 0.5 - 0.5 * np.tanh(6 * outside)                            # 1 inside, 0 outside, soft edge
            image = image + inside * (rng.uniform(0, 1, (channels, 1, 1)) - image)
        images[index] = image
    return np.round(images * 255).astype(np.uint8)


def balanced_labels(count: int, seed: int, classes: int = 10) -> np.ndarray:
    """Every class equally often (count a multiple of `classes`), in a seeded order."""
    return np.random.default_rng(seed).permutation(np.arange(count) % classes)


# --- CIFAR-10: pickled dicts of uint8 rows, 1024 red then 1024 green then 1024 blue values -----


def write_cifar_batch(path: Path, pixels: np.ndarray, labels: list[int]) -> None:
    """One batch file as the official ones hold it (protocol 2, bytes keys when read with encoding="bytes")."""
    batch = {
        b"batch_label": f"synthetic {path.name}".encode(),
        b"labels": list(labels),
        b"data": pixels.reshape(len(pixels), -1),
        b"filenames": [f"synthetic_{index:05d}.png".encode() for index in range(len(pixels))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar_folder(folder: Path, per_batch: int = 4, test_images: int | None = None, *, seed: int = 0,
                       label_names: tuple[str, ...] | None = CIFAR10_LABEL_NAMES) -> Path:
    """data_batch_1..5 of `per_batch` images, test_batch, and batches.meta unless `label_names` is None."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [*CIFAR10_TRAIN_BATCHES, "test_batch"]
    counts = [per_batch] * 5 + [per_batch if test_images is None else test_images]
    for number, (name, count) in enumerate(zip(names, counts)):
        write_cifar_batch(folder / name, smooth_images(count, 3, 32, seed + number),
                          balanced_labels(count, seed + number).tolist())
    if label_names is not None:
        meta = {b"label_names": [name.encode() for name in label_names], b"num_cases_per_batch": per_batch,
                b"num_vis": 3 * 32 * 32}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


# --- MNIST and Fashion-MNIST: gzipped IDX files --------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: 2 zero bytes, type 0x08, ndim, big-endian int32 dims, data."""
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, images: int = 3, test_images: int | None = None, *, seed: int = 0) -> np.ndarray:
    """train- and t10k- images and labels (labels 0, 1, 2, ... in turn); returns the training pixels [N, 28, 28]."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": smooth_images(images, 1, 28, seed)[:, 0],
              "t10k": smooth_images(test_images or images, 1, 28, seed + 1)[:, 0]}
    for prefix, pixels in splits.items():
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels)))
        labels = np.arange(len(pixels)) % 10
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return splits["train"]


# --- a folder of images ---------------------------------------------------------------------


def write_image_folder(folder: Path, count: int = 80) -> Path:
    """Stripes and gradients in png, jpg and webp, of assorted sizes and modes (RGB, gray, RGBA)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for number in range(count):
        height, width = rng.integers(18, 60, size=2)
        rows, columns = np.mgrid[0:height, 0:width]
        period = rng.uniform(2, 8)
        pixels = np.stack([127 + 127 * np.sin(columns / period + phase) * rows / height
                           for phase in rng.uniform(0, 6, size=3)], axis=-1).astype(np.uint8)
        image = Image.fromarray(pixels)
        image = (image, image.convert("L"), image.convert("RGBA"))[number % 3]
        suffix = ("png", "jpg", "webp")[number % 3]
        image.convert("RGB" if suffix == "jpg" else image.mode).save(folder / f"image_{number:03d}.{suffix}")
    return folder


def write_gray_pngs(folder: Path, count: int, start: int = 0) -> None:
    """Flat images whose single grey value (5 * index) tells them apart after any resize."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        Image.new("L", (20 + index, 30), 5 * index).save(folder / f"image_{index:03d}.png")
