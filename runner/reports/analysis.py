"""The VAE loss-term analysis: what each term of the VAE loss does to a 2-D latent space.

The original study's figure "effects of minimising each term of the loss": a VAE with a
2-D latent trained on Fashion-MNIST (or MNIST) three ways, reconstruction loss only, KL
only, and both, with the latent means of test images plotted by class; then a walk in a
straight line between two test images through the latent space of a plain autoencoder
and of the VAE. These are single-image autoencoders: the input is an image mixed with
itself, so the project's separators (two heads, `encode`/`decode`) serve unchanged, and
both heads learn to return the image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from runner.models.config import ModelConfig
from runner.data.sources import load_images
from runner.training.losses import separation_loss
from runner.models import build_model
from runner.data.sampler import to_unit

DATASETS = ("fashion-mnist", "mnist")
# Two levels take 28x28 down to 7x7 before the dense 2-D latent; sigmoid heads, no mixture term.
MODEL = ModelConfig(family="vae", widths=[16, 32], bottleneck=32, latent_dim=2, output="free")
LATENT_FILE = "vae-latent-terms.png"
INTERPOLATION_FILE = "vae-interpolation.png"


@dataclass
class VaeTermsSettings:
    epochs: int = 5                 # per model; four models are trained
    train_images: int = 20_000      # of the training split, from its start
    test_points: int = 2_000        # test images in the latent scatter plots
    batch_size: int = 128
    lr: float = 2e-3                # Adam
    kl_weight: float = 5e-3         # KL per image against the per-pixel MSE of the "both" VAE
    steps: int = 9                  # decoded points on each interpolation line
    seed: int = 0


@dataclass(frozen=True)
class Objective:
    """One way to train: which model, and the weights of its two loss terms."""

    family: str
    reconstruction: float
    kl: float


def objectives(settings: VaeTermsSettings) -> dict[str, Objective]:
    return {
        "reconstruction only": Objective("vae", 1.0, 0.0),
        "KL only": Objective("vae", 0.0, 1.0),
        "reconstruction + KL": Objective("vae", 1.0, settings.kl_weight),
    }


def run_vae_terms(
    dataset: str,
    output: Path,
    *,
    data_dir: str | None = None,
    settings: VaeTermsSettings | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[Path]:
    """Train the models, draw the latent panels and the interpolation strip; returns the PNGs."""
    from runner.reports import figures

    settings = settings or VaeTermsSettings()
    train = load_images(dataset, "train", data_dir)
    test = load_images(dataset, "test", data_dir)
    images = to_unit(torch.from_numpy(train.pixels[: settings.train_images]))
    test_images = to_unit(torch.from_numpy(test.pixels[: settings.test_points]))
    test_labels = test.labels[: settings.test_points]

    trained = {}
    for name, objective in [*objectives(settings).items(), ("autoencoder", Objective("ae", 1.0, 0.0))]:
        trained[name] = train_autoencoder(images, objective, settings)
        log(f"trained {name} ({objective.family}, {settings.epochs} epochs on {len(images)} images)")

    output.mkdir(parents=True, exist_ok=True)
    means = {name: latent_means(trained[name], test_images) for name in objectives(settings)}
    latent = figures.latent_panels(means, test_labels, test.classes, dataset, output / LATENT_FILE)

    first, last = interpolation_ends(test_labels)
    strips = {
        "autoencoder": interpolate(trained["autoencoder"], test_images[first], test_images[last], settings.steps),
        "VAE": interpolate(trained["reconstruction + KL"], test_images[first], test_images[last], settings.steps),
    }
    interpolation = figures.interpolation_strip(
        strips, test_images[first].numpy(), test_images[last].numpy(), output / INTERPOLATION_FILE)
    return [latent, interpolation]


def train_autoencoder(images: torch.Tensor, objective: Objective, settings: VaeTermsSettings) -> torch.nn.Module:
    """Train a single-image autoencoder of `objective.family` on float images [N, C, H, W]."""
    torch.manual_seed(settings.seed)
    model = build_model(replace(MODEL, family=objective.family), images.shape[1], tuple(images.shape[-2:]))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    model.train()
    for _ in range(settings.epochs):
        for batch in torch.randperm(len(images)).split(settings.batch_size):
            image = images[batch]
            output_1, output_2, kl = model.forward_train(image)   # an image mixed with itself is the image
            loss = objective.reconstruction * separation_loss(output_1, output_2, image, image)
            if kl is not None:
                loss = loss + objective.kl * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def latent_means(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """[N, 2]: the encoder's mean for each image (the VAE's `encode` gives the mean)."""
    return torch.cat([model.encode(batch) for batch in images.split(500)]).numpy()


@torch.no_grad()
def interpolate(model: torch.nn.Module, start: torch.Tensor, end: torch.Tensor, steps: int) -> np.ndarray:
    """[steps, C, H, W]: decodings of evenly spaced points on the line between two latents."""
    ends = model.encode(torch.stack([start, end]))
    weights = torch.linspace(0, 1, steps)[:, None]
    latents = (1 - weights) * ends[0] + weights * ends[1]
    # Sigmoid heads ignore the mixture argument; zeros make that plain.
    blank = torch.zeros(steps, *start.shape)
    return model.decode(blank, latents)[0].numpy()


def interpolation_ends(labels: np.ndarray) -> tuple[int, int]:
    """The first test image and the first one of another class: a walk between two kinds of thing."""
    other = np.flatnonzero(labels != labels[0])
    return 0, int(other[0]) if len(other) else min(1, len(labels) - 1)
