"""The Python API of separation, which the `separate` command is built on.

    from PIL import Image
    from runner.inference import Separator

    separator = Separator.load()                      # the default model, as `separate` picks it
    first, second = separator.separate(Image.open("avg.png"))
    pairs = separator.separate_batch([array_1, array_2])

A PIL image or a uint8/float numpy array goes in; two of the same kind come out. A bad
input raises `BadImage` and a bad model `RunnerError` (BadImage is one), each with the
one line `separate` would print. An input far from the model's training size draws a
`SizeWarning`. `separate_files` is the command's own loop over image files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from runner.inference.catalog import DEFAULT_MODELS_DIR, ModelEntry, choose
from runner.inference.images import BadImage, from_memory, read_image, read_size, to_pixels, write_png
from runner.inference.model import Model, batches, load_model, prepare_batch

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_PIXELS = 4096 * 4096  # per image file, checked from the header before decoding

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)


class SizeWarning(UserWarning):
    """An input far from the size of the model's training images: expect a poor separation."""


class Separator:
    """An exported model, ready to separate images in memory or files on disk."""

    def __init__(self, model: Model, entry: ModelEntry):
        self.model = model
        self.entry = entry

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        *,
        models_dir: str | Path = DEFAULT_MODELS_DIR,
        threads: int | None = None,
    ) -> Separator:
        """Load a model by path or name, or (None) the default: the newest of the shipped
        model and the exports in `models_dir`. `threads`: onnxruntime's (default: all cores)."""
        entry = choose(model, Path(models_dir))
        return cls(load_model(entry.path, threads), entry)

    @property
    def name(self) -> str:
        return self.entry.name

    def separate(self, image: ImageLike) -> tuple[ImageLike, ImageLike]:
        """Both sources of one averaged image, as two images of the input's kind."""
        return self.separate_batch([image])[0]

    def separate_batch(self, images: Sequence[ImageLike], batch_size: int = DEFAULT_BATCH_SIZE) -> list[tuple[ImageLike, ImageLike]]:
        """`separate` for many images, run in batches of one padded size; results in input order."""
        inputs = [from_memory(image, self.model) for image in images]
        sizes = {index: (pixels.shape[2], pixels.shape[1]) for index, (pixels, _) in enumerate(inputs)}
        for width, height in sizes.values():
            if self.model.far_from_training(width, height):
                warnings.warn(self.model.size_warning(width, height), SizeWarning, stacklevel=2)
        results: list = [None] * len(inputs)
        for keys in batches(sizes, self.model, batch_size):
            outputs = self._run([inputs[key][0] for key in keys])
            for key, (first, second) in zip(keys, outputs):
                back = inputs[key][1]
                results[key] = (back(first), back(second))
        return results

    def separate_files(
        self,
        outputs: dict[Path, tuple[Path, Path]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_error: Callable[[Path, BadImage], None],
        on_done: Callable[[], None] = lambda: None,
        on_far: Callable[[list[tuple[Path, int, int]]], None] = lambda far: None,
    ) -> int:
        """Separate each image file into its two output PNGs; returns how many images failed.

        `outputs` maps each input to its two targets (`images.output_paths`). `on_error`
        hears about each bad image, `on_done` about each image finished either way, and
        `on_far` once about the inputs far from the training size, before any is run.
        """
        failures, sizes = 0, {}
        for path in outputs:
            try:
                sizes[path] = read_size(path, self.model, max_pixels)
            except BadImage as error:
                failures += 1
                on_error(path, error)
                on_done()
        far = [(path, width, height) for path, (width, height) in sizes.items() if self.model.far_from_training(width, height)]
        if far:
            on_far(far)
        for paths in batches(sizes, self.model, batch_size):
            failures += self._separate_batch_of_files(paths, outputs, max_pixels, on_error, on_done)
        return failures

    def _separate_batch_of_files(self, paths, outputs, max_pixels, on_error, on_done) -> int:
        images, readable = [], []
        for path in paths:
            try:
                images.append(read_image(path, self.model, max_pixels))
                readable.append(path)
            except BadImage as error:
                on_error(path, error)
                on_done()
        if images:
            for path, sources in zip(readable, self._run(images)):
                for source, target in zip(sources, outputs[path]):
                    write_png(to_pixels(source), target)
                on_done()
        return len(paths) - len(images)

    def _run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Both sources of each [C, H, W] image (of sizes that pad alike), cropped to its own size, unclipped."""
        source_1, source_2 = self.model.run(prepare_batch(images, self.model))
        return [(source_1[index, :, :height, :width], source_2[index, :, :height, :width])
                for index, (_, height, width) in enumerate(image.shape for image in images)]
