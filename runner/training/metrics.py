"""Separation quality: PIT-PSNR, PIT-SSIM and the Average baseline.

For each pair the outputs are clamped to [0, 1] and scored under both assignments
(output 1 -> a or output 1 -> b); the better mean of the two counts. The Average
baseline returns the mixture twice; every report shows it beside the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.scoring import MIN_MSE, pit


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR per image (data range 1), shape [N]."""
    mse = (prediction - target).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp_min(MIN_MSE))


def _gaussian_window(channels: int, size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, data range 1), shape [N].

    Written here because none of the project's dependencies ships it for torch tensors
    (torchvision does not; torchmetrics would be a new dependency for 15 lines).
    """
    channels = prediction.shape[1]
    size = min(11, prediction.shape[-1], prediction.shape[-2])
    window = _gaussian_window(channels, size, device=prediction.device)
    c1, c2 = 0.01**2, 0.03**2

    def blur(x):
        return F.conv2d(x, window, groups=channels)

    mu_x, mu_y = blur(prediction), blur(target)
    var_x = blur(prediction * prediction) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(prediction * target) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def pit_score(score, output_1, output_2, source_a, source_b) -> torch.Tensor:
    """Per-pair score of the outputs clamped to [0, 1], under the better of the two assignments, shape [N]."""
    return pit(score, output_1.clamp(0, 1), output_2.clamp(0, 1), source_a, source_b, maximum=torch.maximum)


def separation_scores(output_1, output_2, source_a, source_b) -> dict[str, torch.Tensor]:
    """Per-pair PIT-PSNR and PIT-SSIM, shape [N] each."""
    return {
        "pit_psnr": pit_score(psnr, output_1, output_2, source_a, source_b),
        "pit_ssim": pit_score(ssim, output_1, output_2, source_a, source_b),
    }


def align_to_sources(output_1, output_2, source_a, source_b) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs clamped to [0, 1] and, pair by pair, ordered by the better assignment: output 1 estimates a."""
    output_1, output_2 = output_1.clamp(0, 1), output_2.clamp(0, 1)
    swap = psnr(output_1, source_b) + psnr(output_2, source_a) > psnr(output_1, source_a) + psnr(output_2, source_b)
    swap = swap[:, None, None, None]
    return torch.where(swap, output_2, output_1), torch.where(swap, output_1, output_2)


def baseline_scores(source_a, source_b) -> dict[str, torch.Tensor]:
    """The Average baseline: both outputs are the mixture."""
    mixture = (source_a + source_b) / 2
    return separation_scores(mixture, mixture, source_a, source_b)
