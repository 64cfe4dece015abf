"""Training losses: the permutation-invariant reconstruction loss and the VAE's KL weight.

(a, b) and (b, a) make the same mixture, so a loss that insists on head 1 = a has its
optimum at both heads = the mixture. The permutation-invariant loss scores each pair
under both assignments and keeps the better one (PIT, as in speech separation). The
fixed-order loss stays available only to reproduce that collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import RunnerError


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(prediction, target, reduction="none").flatten(1).mean(dim=1)


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(prediction, target, reduction="none").flatten(1).mean(dim=1)


def negative_psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The negated PSNR of each image (10 log10 of its MSE), so the loss is the metric itself:
    a mean of PSNRs weighs every pair alike, where a mean of MSEs is dominated by the hardest pairs."""
    return 10 * torch.log10(mse(prediction, target) + 1e-8)


# `train.recon` picks one: each maps (prediction, target) to the error of each image, shape [N].
RECONSTRUCTION = {"mse": mse, "l1": l1, "psnr": negative_psnr}


def per_image_error(prediction: torch.Tensor, target: torch.Tensor, recon: str) -> torch.Tensor:
    """Mean error of each image in the batch under `recon`, shape [N]."""
    if recon not in RECONSTRUCTION:
        raise RunnerError(f"unknown reconstruction loss '{recon}'; valid: {', '.join(RECONSTRUCTION)}")
    return RECONSTRUCTION[recon](prediction, target)


def separation_loss(
    output_1: torch.Tensor,
    output_2: torch.Tensor,
    source_a: torch.Tensor,
    source_b: torch.Tensor,
    *,
    recon: str = "mse",
    permutation_invariant: bool = True,
) -> torch.Tensor:
    direct = per_image_error(output_1, source_a, recon) + per_image_error(output_2, source_b, recon)
    if not permutation_invariant:
        return direct.mean() / 2
    swapped = per_image_error(output_1, source_b, recon) + per_image_error(output_2, source_a, recon)
    return torch.minimum(direct, swapped).mean() / 2


def total_loss(outputs, source_a, source_b, *, recon: str, permutation_invariant: bool, kl_weight: float):
    """Separation loss plus the model's own term (the VAE's KL divergence), weighted."""
    output_1, output_2, model_term = outputs
    loss = separation_loss(
        output_1, output_2, source_a, source_b, recon=recon, permutation_invariant=permutation_invariant
    )
    if model_term is not None:
        loss = loss + kl_weight * model_term
    return loss
