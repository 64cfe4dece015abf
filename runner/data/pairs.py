"""Which images form a pair: fixed, seeded pair lists (numpy only, no torch).

Evaluation pairs must be the same for every trial, every experiment and every tool that
scores them (training's validation, `runner mixtures`, the benchmarks), so they all draw
them here.
"""

from __future__ import annotations

import numpy as np

from runner.errors import RunnerError

VAL_PAIRS_SEED = 5678   # which validation images are paired
TEST_PAIRS_SEED = 91011 # which test images are paired


def fixed_pairs(image_count: int, pair_count: int, seed: int) -> np.ndarray:
    """int64 [pair_count, 2]: pairs of two different images, the same for the same arguments."""
    if image_count < 2:
        raise RunnerError(f"need at least 2 images to make pairs, got {image_count}")
    rng = np.random.default_rng(seed)
    rounds = -(-pair_count // image_count)
    first = np.concatenate([rng.permutation(image_count) for _ in range(rounds)])[:pair_count]
    # An offset in [1, N-1] makes the second image always differ from the first.
    offset = rng.integers(1, image_count, size=pair_count)
    return np.stack([first, (first + offset) % image_count], axis=1).astype(np.int64)
