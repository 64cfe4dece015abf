"""Mixture pairs: the in-memory image tensors, fresh training pairs, fixed evaluation pairs.

Images stay uint8 on the training device (GPU included) and pairs are built there by
indexing, so there is no DataLoader between the data and the model. Validation pairs
are drawn once from a fixed seed, so every trial of every experiment scores the same
pairs; a training epoch draws new ones from the trial's own generator.
"""

from __future__ import annotations

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
AUGMENTS = ("none", "flip", "sources")  # none | flip (both sources together) | sources (each on its own)


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


def load_pair_data(config: DataConfig, data_dir=None, device: str | torch.device = "cpu") -> PairData:
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
    return PairData(
        train=torch.from_numpy(pixels[train_index]).to(device),
        val=torch.from_numpy(pixels[val_index]).to(device),
        val_pairs=torch.from_numpy(fixed_pairs(config.val_images, config.val_pairs, VAL_PAIRS_SEED)).to(device),
    )


def load_test_images(config: DataConfig, data_dir=None) -> torch.Tensor:
    """The dataset's test split as uint8 [N, C, H, W] (benchmarks and figures; never trained on)."""
    images = load_images(config.dataset, "test", data_dir, channels=config.channels, image_size=config.image_size)
    return torch.from_numpy(images.pixels)


def random_pairs(image_count: int, pair_count: int, generator: torch.Generator) -> torch.Tensor:
    if image_count < 2:
        raise RunnerError(f"need at least 2 images to make pairs, got {image_count}")
    device = generator.device
    first = torch.cat([
        torch.randperm(image_count, generator=generator, device=device)
        for _ in range(-(-pair_count // image_count))
    ])[:pair_count]
    # An offset in [1, N-1] makes the second image always differ from the first.
    offset = torch.randint(1, image_count, (pair_count,), generator=generator, device=device)
    return torch.stack([first, (first + offset) % image_count], dim=1)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255)


def make_mixtures(images: torch.Tensor, pairs: torch.Tensor):
    """(mixture, a, b) as float in [0, 1] for uint8 `images` and index `pairs`."""
    source_a, source_b = to_unit(images[pairs[:, 0]]), to_unit(images[pairs[:, 1]])
    return (source_a + source_b) / 2, source_a, source_b


class PairSampler:
    """Draws fresh random pairs each epoch and yields augmented (mixture, a, b) batches."""

    def __init__(self, images: torch.Tensor, augment: str, seed: int, shift: int = 0):
        self.images = images
        self.augment = augment
        self.shift = shift
        self.generator = torch.Generator(device=images.device).manual_seed(seed)

    def epoch(self, pair_count: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        pairs = random_pairs(len(self.images), pair_count, self.generator)
        for start in range(0, pair_count - batch_size + 1, batch_size):
            batch = pairs[start : start + batch_size]
            source_a, source_b = to_unit(self.images[batch[:, 0]]), to_unit(self.images[batch[:, 1]])
            if self.augment == "flip":
                flip = self._coin(len(batch))
                source_a, source_b = _flip_where(source_a, flip), _flip_where(source_b, flip)
            elif self.augment == "sources":
                source_a, source_b = self._augment_source(source_a), self._augment_source(source_b)
            if self.shift:
                source_a, source_b = self._translate(source_a), self._translate(source_b)
            yield (source_a + source_b) / 2, source_a, source_b

    def _coin(self, count: int) -> torch.Tensor:
        return torch.rand(count, generator=self.generator, device=self.images.device) < 0.5

    def _augment_source(self, images: torch.Tensor) -> torch.Tensor:
        """Each source on its own: a horizontal flip, a channel permutation, a brightness/contrast jitter."""
        count, channels = images.shape[:2]
        images = _flip_where(images, self._coin(count))
        if channels == 3:
            order = torch.argsort(torch.rand(count, 3, generator=self.generator, device=images.device), dim=1)
            images = torch.gather(images, 1, order[:, :, None, None].expand_as(images))
        scale = 1 + 0.2 * (torch.rand(count, 1, 1, 1, generator=self.generator, device=images.device) - 0.5)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * scale + mean).clamp_(0, 1)

    def _translate(self, images: torch.Tensor) -> torch.Tensor:
        """Each image moved by its own random offset of up to `shift` pixels, edges reflected."""
        count, channels, height, width = images.shape
        padded = torch.nn.functional.pad(images, [self.shift] * 4, mode="reflect")
        offsets = torch.randint(0, 2 * self.shift + 1, (2, count, 1), generator=self.generator, device=images.device)
        rows = offsets[0] + torch.arange(height, device=images.device)
        columns = offsets[1] + torch.arange(width, device=images.device)
        padded = padded.gather(2, rows[:, None, :, None].expand(count, channels, height, padded.shape[-1]))
        return padded.gather(3, columns[:, None, None, :].expand(count, channels, height, width))


def _flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _first_per_class(labels, per_class: int) -> np.ndarray:
    if labels is None:
        raise RunnerError("data.per_class needs a labelled dataset; the folder source has no classes")
    keep = [np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(keep))
