"""Permutation-invariant loss, PIT-PSNR/SSIM and the Average baseline."""

import math

import torch

from runner.training.losses import separation_loss, total_loss
from runner.training.metrics import baseline_scores, psnr, separation_scores, ssim


def sources(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(4, 3, 16, 16, generator=generator), torch.rand(4, 3, 16, 16, generator=generator)


def test_pit_loss_ignores_the_order_of_the_outputs():
    a, b = sources()
    assert separation_loss(a, b, a, b).item() == 0
    assert separation_loss(b, a, a, b).item() == 0
    assert separation_loss(b, a, a, b, permutation_invariant=False).item() > 0


def test_fixed_order_loss_is_minimised_by_returning_the_mixture_when_order_is_random():
    """The collapse: with a and b in random order, the best fixed-order answer is the mixture."""
    a, b = sources()
    mixture = (a + b) / 2
    swapped_half = torch.where(torch.arange(4)[:, None, None, None] % 2 == 0, a, b)
    other_half = torch.where(torch.arange(4)[:, None, None, None] % 2 == 0, b, a)
    at_mixture = separation_loss(mixture, mixture, swapped_half, other_half, permutation_invariant=False)
    at_truth_in_one_order = separation_loss(a, b, swapped_half, other_half, permutation_invariant=False)
    assert at_mixture < at_truth_in_one_order
    assert separation_loss(a, b, swapped_half, other_half) == 0


def test_kl_term_is_weighted():
    a, b = sources()
    assert total_loss((a, b, torch.tensor(2.0)), a, b, recon="l1", permutation_invariant=True, kl_weight=0.5) == 1.0


def test_psnr_known_value():
    prediction, target = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)
    assert math.isclose(psnr(prediction, target).item(), 20.0, rel_tol=1e-5)


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    a, b = sources()
    assert torch.allclose(ssim(a, a), torch.ones(4), atol=1e-5)
    assert (ssim(a, b) < 0.5).all()


def test_pit_scores_take_the_better_assignment_and_beat_the_baseline():
    a, b = sources()
    forward, backward = separation_scores(a, b, a, b), separation_scores(b, a, a, b)
    assert torch.equal(forward["pit_psnr"], backward["pit_psnr"])
    baseline = baseline_scores(a, b)
    assert (baseline["pit_psnr"] < forward["pit_psnr"]).all()
    mixture = (a + b) / 2
    assert torch.equal(separation_scores(mixture, mixture, a, b)["pit_psnr"], baseline["pit_psnr"])


def test_psnr_loss_is_the_negated_pit_psnr_of_the_outputs():
    a, b = sources()
    output_1, output_2 = (a + 0.1 * b).clamp(0, 1), (b + 0.05 * a).clamp(0, 1)
    loss = separation_loss(output_2, output_1, a, b, recon="psnr")
    torch.testing.assert_close(loss, -separation_scores(output_1, output_2, a, b)["pit_psnr"].mean(), atol=1e-3, rtol=0)
