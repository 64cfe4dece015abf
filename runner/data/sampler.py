"""Mixture pairs: the in-memory image tensors, fresh training pairs, fixed evaluation pairs.

Images stay uint8 on the training device (GPU included) and pairs are built there by
indexing, so there is no DataLoader between the data and the model. Validation pairs
are drawn once from a fixed seed, so every trial of every experiment scores the same
pairs; a training epoch draws new ones from the trial's seed and the epoch number.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from runner.data.sources import load_images
from runner.errors import RunnerError
from runner.data.pairs import VAL_PAIRS_SEED, fixed_pairs

if TYPE_CHECKING:  # type only: runner.data.config checks names against this module's registry
    from runner.data.config import DataConfig

SPLIT_SEED = 1234       # which training images are held out for validation


@dataclass
class PairData:
    train: torch.Tensor        # uint8 [N, C, H, W]
    val: torch.Tensor          # uint8 [M, C, H, W], held out of the training split
    val_pairs: torch.Tensor    # long [P, 2], indices into `val`

    @property
    def channels(self) -> int:
        return self.train.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.shape[-2:])

    def to(self, device: str | torch.device) -> PairData:
        return PairData(self.train.to(device), self.val.to(device), self.val_pairs.to(device))


def load_pair_data(config: DataConfig, data_dir=None, device: str | torch.device = "cpu") -> PairData:
    return pair_data(load_pair_arrays(config, data_dir), device)


# The data: keys that decide what load_pair_arrays returns (augment and shift act on batches).
LOADED_BY = ("dataset", "channels", "image_size", "per_class", "val_images", "val_pairs")


def data_key(config: DataConfig) -> tuple:
    """Equal for two data: sections that load the same arrays."""
    return tuple(getattr(config, key) for key in LOADED_BY)


def load_pair_arrays(config: DataConfig, data_dir=None) -> dict[str, np.ndarray]:
    """The images and validation pairs of `config` as numpy arrays (what a search shares with its trials)."""
    images = load_images(
        config.dataset, "train", data_dir, channels=config.channels, image_size=config.image_size
    )
    pixels = images.pixels
    if config.per_class is not None:
        pixels = pixels[_first_per_class(images.labels, config.per_class)]
    if len(pixels) < config.val_images + 2:
        raise RunnerError(
            f"{config.dataset} has {len(pixels)} training images, too few to hold out "
            f"{config.val_images} for validation; lower data.val_images or add images"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(len(pixels))
    val_index, train_index = np.sort(order[: config.val_images]), np.sort(order[config.val_images :])
    return {"train": pixels[train_index], "val": pixels[val_index],
            "val_pairs": fixed_pairs(config.val_images, config.val_pairs, VAL_PAIRS_SEED)}


def pair_data(arrays: dict[str, np.ndarray], device: str | torch.device = "cpu") -> PairData:
    """`load_pair_arrays`'s arrays as tensors on `device`, sharing their memory on the CPU.

    Arrays read from Ray's object store are read-only, and torch warns that it cannot mark
    a tensor so: these are only ever indexed (every batch is a new tensor), never written.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return PairData(*(torch.from_numpy(arrays[key]).to(device) for key in ("train", "val", "val_pairs")))


def load_test_images(config: DataConfig, data_dir=None) -> torch.Tensor:
    """The dataset's test split as uint8 [N, C, H, W] (benchmarks and figures; never trained on)."""
    images = load_images(config.dataset, "test", data_dir, channels=config.channels, image_size=config.image_size)
    return torch.from_numpy(images.pixels)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255)


def make_mixtures(images: torch.Tensor, pairs: torch.Tensor):
    """(mixture, a, b) as float in [0, 1] for uint8 `images` and index `pairs`."""
    source_a, source_b = to_unit(images[pairs[:, 0]]), to_unit(images[pairs[:, 1]])
    return (source_a + source_b) / 2, source_a, source_b


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's pairs and augmentations: a resumed run redraws them from (seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class PairSampler:
    """Draws fresh pairs each epoch and yields augmented (mixture, a, b) batches.

    Each epoch's randomness is derived from (seed, epoch) alone, so a checkpoint needs no
    generator state and resumes the same on any device. Pairs come from `fixed_pairs`, the
    project's one pair-drawing routine, on the CPU; augmentations draw on the images' device.
    """

    def __init__(self, images: torch.Tensor, augment: str, seed: int, shift: int = 0):
        if augment not in AUGMENTS:
            raise RunnerError(f"unknown data.augment '{augment}'; valid: {', '.join(AUGMENTS)}")
        self.images, self.augment, self.seed, self.shift = images, AUGMENTERS[augment], seed, shift

    def epoch(self, epoch: int, pair_count: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        seed = epoch_seed(self.seed, epoch)
        pairs = torch.from_numpy(fixed_pairs(len(self.images), pair_count, seed)).to(self.images.device)
        generator = torch.Generator(device=self.images.device).manual_seed(seed)
        for start in range(0, pair_count - batch_size + 1, batch_size):
            batch = pairs[start : start + batch_size]
            source_a, source_b = to_unit(self.images[batch[:, 0]]), to_unit(self.images[batch[:, 1]])
            source_a, source_b = self.augment(source_a, source_b, generator)
            if self.shift:
                source_a, source_b = translate(source_a, self.shift, generator), translate(source_b, self.shift, generator)
            yield (source_a + source_b) / 2, source_a, source_b


def _coin(count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=generator.device) < 0.5


def _flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def flip_pair(source_a: torch.Tensor, source_b: torch.Tensor, generator: torch.Generator):
    """Both sources of a pair flipped horizontally together, half of the pairs."""
    flip = _coin(len(source_a), generator)
    return _flip_where(source_a, flip), _flip_where(source_b, flip)


def augment_sources(source_a: torch.Tensor, source_b: torch.Tensor, generator: torch.Generator):
    return augment_source(source_a, generator), augment_source(source_b, generator)


def augment_source(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each source on its own: a horizontal flip, a channel permutation, a brightness/contrast jitter."""
    count, channels = images.shape[:2]
    images = _flip_where(images, _coin(count, generator))
    if channels == 3:
        order = torch.argsort(torch.rand(count, 3, generator=generator, device=images.device), dim=1)
        images = torch.gather(images, 1, order[:, :, None, None].expand_as(images))
    scale = 1 + 0.2 * (torch.rand(count, 1, 1, 1, generator=generator, device=images.device) - 0.5)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * scale + mean).clamp_(0, 1)


def translate(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random offset of up to `shift` pixels, edges reflected."""
    count, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, [shift] * 4, mode="reflect")
    offsets = torch.randint(0, 2 * shift + 1, (2, count, 1), generator=generator, device=images.device)
    rows = offsets[0] + torch.arange(height, device=images.device)
    columns = offsets[1] + torch.arange(width, device=images.device)
    padded = padded.gather(2, rows[:, None, :, None].expand(count, channels, height, padded.shape[-1]))
    return padded.gather(3, columns[:, None, None, :].expand(count, channels, height, width))


# data.augment's values and what each does to a batch of pairs.
AUGMENTERS = {
    "none": lambda source_a, source_b, generator: (source_a, source_b),
    "flip": flip_pair,           # both sources together
    "sources": augment_sources,  # each source on its own
}
AUGMENTS = tuple(AUGMENTERS)     # the names: the config section takes its choices from these


def _first_per_class(labels, per_class: int) -> np.ndarray:
    if labels is None:
        raise RunnerError("data.per_class needs a labelled dataset; the folder source has no classes")
    keep = [np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(keep))
