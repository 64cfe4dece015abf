"""A checkpoint's separations of the first fixed test pairs: the rows of the report's image grid.

The pairs come from the dataset's test split with the seed every other test tool uses
(`runner.data.pairs.TEST_PAIRS_SEED`), so the grid shows images no trial trained or
validated on, and the same ones for every experiment on that dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runner.training.checkpoint import load_checkpoint, rebuild_model
from runner.training.metrics import align_to_sources, baseline_scores, separation_scores
from runner.data.pairs import TEST_PAIRS_SEED, fixed_pairs
from runner.data.sampler import load_test_images, make_mixtures


@dataclass(frozen=True)
class Separation:
    """One test pair, float [C, H, W] images in [0, 1]; the outputs ordered to match (a, b)."""

    mixture: np.ndarray
    source_a: np.ndarray
    source_b: np.ndarray
    output_1: np.ndarray
    output_2: np.ndarray
    psnr: float             # PIT-PSNR of the two outputs
    baseline_psnr: float    # the Average baseline on the same pair


@torch.no_grad()
def separate_test_pairs(checkpoint: Path, data_dir: str | None, count: int) -> list[Separation]:
    state = load_checkpoint(checkpoint)
    model = rebuild_model(state)
    images = load_test_images(state.data_config, data_dir)
    pairs = torch.from_numpy(fixed_pairs(len(images), count, TEST_PAIRS_SEED))
    mixture, source_a, source_b = make_mixtures(images, pairs)
    output_1, output_2 = align_to_sources(*model(mixture), source_a, source_b)
    scores = separation_scores(output_1, output_2, source_a, source_b)["pit_psnr"]
    baselines = baseline_scores(source_a, source_b)["pit_psnr"]
    return [
        Separation(*(tensor[index].numpy() for tensor in (mixture, source_a, source_b, output_1, output_2)),
                   psnr=scores[index].item(), baseline_psnr=baselines[index].item())
        for index in range(len(pairs))
    ]
