"""PIT-PSNR, the one measure of a separation: training's validation, `runner score` and the
export's precision check all score with the routines here.

(a, b) and (b, a) make the same mixture, so the two outputs are scored under both
assignments and the better one counts (permutation-invariant, PIT). `pit` takes the
per-image score and the element-wise maximum of the array library in use, so torch
tensors on any device and numpy arrays go through the same code. numpy only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MIN_MSE = 1e-10  # caps a perfect match at 100 dB instead of infinity


def pit(score: Callable, output_1, output_2, source_a, source_b, maximum: Callable = max):
    """`score` of the outputs under the better of the two assignments (per image for arrays)."""
    direct = (score(output_1, source_a) + score(output_2, source_b)) / 2
    swapped = (score(output_1, source_b) + score(output_2, source_a)) / 2
    return maximum(direct, swapped)


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two arrays with values in [0, 1], over all their elements."""
    mse = float(np.mean((np.asarray(prediction, np.float64) - target) ** 2))
    return 10 * np.log10(1.0 / max(mse, MIN_MSE))


def pit_psnr(output_1: np.ndarray, output_2: np.ndarray, source_a: np.ndarray, source_b: np.ndarray) -> float:
    return pit(psnr, output_1, output_2, source_a, source_b)
