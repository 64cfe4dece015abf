"""The Python API of separation, which the `separate` command is built on.

    from PIL import Image
    from runner.inference import Separator

    separator = Separator.load()                      # the default model, as `separate` picks it
    first, second = separator.separate(Image.open("avg.png"))
    pairs = separator.separate_batch([array_1, array_2])

A PIL image or a uint8/float numpy array goes in; two of the same kind come out. A bad
input raises `BadImage` and a bad model `RunnerError` (BadImage is one), each with the
one line `separate` would print. An input far from the model's training size draws a
`SizeWarning`, a PIL image whose alpha or later frames go unused an `UnusedWarning`. An
image larger than a tile runs as overlapping tiles (`runner.inference.tiling`), so memory
stays bounded. `separate_files` is the command's own loop over image files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from runner.inference.catalog import DEFAULT_MODELS_DIR, ModelEntry, choose
from runner.inference.images import BadImage, from_memory, read_image, read_size, to_pixels, unused, write_png
from runner.inference.model import BATCH_PIXEL_BUDGET, Model, batches, load_model, prepare_batch
from runner.inference.tiling import OVERLAP, TILE, separate_tiled

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_PIXELS = 4096 * 4096  # per image file, checked from the header before decoding

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)


class SizeWarning(UserWarning):
    """An input far from the size of the model's training images: expect a poor separation."""


class UnusedWarning(UserWarning):
    """Part of a PIL image was not separated: its alpha channel, or its frames after the first."""


class Separator:
    """An exported model, ready to separate images in memory or files on disk."""

    def __init__(self, model: Model, entry: ModelEntry, *, tile: int = TILE, overlap: int = OVERLAP):
        """`tile`, `overlap`: an image larger than `tile` pixels on a side runs as tiles that
        overlap by `overlap` pixels (`runner.inference.tiling`), both rounded to the model's size multiple."""
        self.model = model
        self.entry = entry
        multiple = model.size_multiple
        self.tile = max(multiple, tile // multiple * multiple)
        self.overlap = min(self.tile - multiple, -(-overlap // multiple) * multiple)

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        *,
        models_dir: str | Path = DEFAULT_MODELS_DIR,
        threads: int | None = None,
        tile: int = TILE,
        overlap: int = OVERLAP,
    ) -> Separator:
        """Load a model by path or name, or (None) the default (`runner.inference.catalog`).
        `threads`: onnxruntime's (default: all cores); `tile`, `overlap`: see `__init__`."""
        entry = choose(model, Path(models_dir))
        return cls(load_model(entry.path, threads), entry, tile=tile, overlap=overlap)

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
        for image in images:
            note = unused(image) if isinstance(image, Image.Image) else None
            if note:
                warnings.warn(f"the image: {note}", UnusedWarning, stacklevel=2)
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
        on_note: Callable[[Path, str], None] = lambda path, note: None,
        on_far: Callable[[list[tuple[Path, int, int]]], None] = lambda far: None,
    ) -> int:
        """Separate each image file into its two output PNGs; returns how many images failed.

        `outputs` maps each input to its two targets (`images.output_paths`). `on_error`
        hears about each bad image, `on_note` about each image of which a part was not used
        (`images.unused`), `on_done` about each image finished either way, and `on_far` once,
        after the run, about the separated inputs far from the training size: so a bad image
        gets its error alone.
        """
        failed: set[Path] = set()

        def fail(path: Path, error: BadImage) -> None:
            failed.add(path)
            on_error(path, error)
            on_done()

        sizes = {}
        for path in outputs:
            try:
                sizes[path] = read_size(path, self.model, max_pixels)
            except BadImage as error:
                fail(path, error)
        for paths in batches(sizes, self.model, batch_size):
            self._separate_batch_of_files(paths, outputs, max_pixels, fail, on_note, on_done)
        far = [(path, width, height) for path, (width, height) in sizes.items()
               if path not in failed and self.model.far_from_training(width, height)]
        if far:
            on_far(far)
        return len(failed)

    def _separate_batch_of_files(self, paths, outputs, max_pixels, fail, on_note, on_done) -> None:
        images, readable = [], []
        for path in paths:
            try:
                pixels, note = read_image(path, self.model, max_pixels)
            except BadImage as error:
                fail(path, error)
                continue
            images.append(pixels)
            readable.append(path)
            if note:
                on_note(path, note)
        results = self._run(images) if images else []
        images.clear()  # free the inputs before the outputs are encoded: a 16 MP one is 192 MB
        for path, sources in zip(readable, results):
            for source, target in zip(sources, outputs[path]):
                write_png(to_pixels(source), target)
            on_done()

    def _run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Both sources of each [C, H, W] image (of sizes that pad alike), cropped to its own size, unclipped.
        Images larger than a tile run as tiles, one image at a time."""
        if self.model.dynamic_spatial and max(self.model.padded_size(*images[0].shape[1:])) > self.tile:
            per_call = max(1, BATCH_PIXEL_BUDGET // self.tile**2)
            return [separate_tiled(image, self.tile, self.overlap, self.model.size_multiple, per_call, self._run_whole)
                    for image in images]
        return self._run_whole(images)

    def _run_whole(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        source_1, source_2 = self.model.run(prepare_batch(images, self.model))
        return [(source_1[index, :, :height, :width], source_2[index, :, :height, :width])
                for index, (_, height, width) in enumerate(image.shape for image in images)]
