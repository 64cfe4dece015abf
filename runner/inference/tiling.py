"""Tiled inference: an image larger than one tile runs as overlapping tiles, blended, so
the memory a model call needs is bounded by the tile, not by the image.

The models that take any size (`dynamic_spatial`) are fully convolutional, so a tile
separates like the same region of the whole image except near its edges, where the
convolutions see padding instead of neighbours. Tiles overlap by `overlap` pixels, and
each tile's output is weighted by a window that rises linearly from near zero at its
edges over `overlap` pixels; the weighted sum is divided by the sum of the weights, so
where two tiles overlap the one farther from its own edge counts most, and where one
tile alone covers a pixel its output is taken as it is. Tile starts are multiples of the
model's size multiple, so every tile's pooling grid lines up with the whole image's.
`benchmarks/inference.py --sections seams` measures what the seams cost against whole-image runs.

Hand-written rather than taken from a library: the blending is twenty lines of numpy,
and the tiling libraries around it (e.g. MONAI's sliding window) bring in torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TILE = 512     # pixels a side; separating one 512x512 image with the shipped U-Net peaked at 320 MB RSS here
OVERLAP = 64   # pixels two neighbouring tiles share; the seams cost nothing measurable (README, Performance)

RunTiles = Callable[[list[np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Where the tiles along one side of `length` pixels begin: multiples of `multiple`,
    at most `tile - overlap` apart, the last one ending at the side padded to `multiple`."""
    padded = -(-length // multiple) * multiple
    if padded <= tile:
        return [0]
    last = padded - tile
    return [*range(0, last, tile - overlap), last]


def ramp(size: int, overlap: int) -> np.ndarray:
    """A tile's weights along one side: rising from 0.5 / overlap at each edge to 1 after `overlap` pixels."""
    position = np.arange(size, dtype=np.float32) + np.float32(0.5)
    return np.minimum(1, np.minimum(position, position[::-1]) / np.float32(max(overlap, 1)))


def separate_tiled(image: np.ndarray, tile: int, overlap: int, multiple: int, per_call: int,
                   run: RunTiles) -> tuple[np.ndarray, np.ndarray]:
    """Both sources of one float32 [C, H, W] image, run as tiles of at most `tile` pixels a side.

    `run` separates a list of [C, h, w] crops (each at most tile x tile; those at the bottom
    and right edges are shorter) and returns each crop's two sources, cropped to it;
    `per_call` crops go to one call. `tile` and `overlap` must be multiples of `multiple`.
    """
    _, height, width = image.shape
    rows, columns = tile_starts(height, tile, overlap, multiple), tile_starts(width, tile, overlap, multiple)
    tile_height, tile_width = min(tile, height), min(tile, width)
    row_ramp, column_ramp = ramp(tile_height, overlap), ramp(tile_width, overlap)
    # The tiles form a grid, so the sum of their weights at (y, x) is the product of the row
    # sums at y and the column sums at x: two vectors instead of a full-size weight image.
    row_weight, column_weight = np.zeros(height, np.float32), np.zeros(width, np.float32)
    for y in rows:
        row_weight[y : y + tile_height] += row_ramp[: height - y]
    for x in columns:
        column_weight[x : x + tile_width] += column_ramp[: width - x]
    sources = np.zeros((2, *image.shape), np.float32)
    boxes = [(y, x) for y in rows for x in columns]
    for start in range(0, len(boxes), per_call):
        chunk = boxes[start : start + per_call]
        outputs = run([image[:, y : y + tile_height, x : x + tile_width] for y, x in chunk])
        for (y, x), pair in zip(chunk, outputs):
            h, w = pair[0].shape[1:]
            weight = row_ramp[:h, np.newaxis] * column_ramp[np.newaxis, :w]
            for source, output in zip(sources, pair):
                source[:, y : y + h, x : x + w] += output * weight
    sources /= row_weight[:, np.newaxis]  # in place: no full-size temporaries
    sources /= column_weight
    return sources[0], sources[1]
