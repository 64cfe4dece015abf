"""`runner analyze vae-terms` for real on Fashion-MNIST-format IDX files written here, with a tiny training budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from runner.reports.analysis import INTERPOLATION_FILE, LATENT_FILE, MODEL, interpolate, interpolation_ends, latent_means
from runner.models import build_model
from tests.synthetic_data import write_idx_folder

BIN = Path(sys.executable).parent


def test_vae_terms_writes_three_latent_panels_and_an_interpolation_strip(tmp_path):
    write_idx_folder(tmp_path / "fashion-mnist", images=300, test_images=200)
    result = subprocess.run(
        [str(BIN / "runner"), "analyze", "vae-terms", "--epochs", "1", "--train-images", "256",
         "--data-dir", str(tmp_path / "fashion-mnist"), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for model in ("reconstruction only", "KL only", "reconstruction + KL", "autoencoder"):
        assert f"trained {model}" in result.stdout and "on 256 images" in result.stdout
    with Image.open(tmp_path / "out" / LATENT_FILE) as latent, Image.open(tmp_path / "out" / INTERPOLATION_FILE) as strip:
        assert latent.format == strip.format == "PNG"
        assert latent.width > 2.5 * latent.height      # three panels side by side
        assert strip.width > 4 * strip.height          # a strip of decodings
    assert (tmp_path / "out" / LATENT_FILE).read_bytes() != (tmp_path / "out" / INTERPOLATION_FILE).read_bytes()


def test_the_analysis_model_has_a_two_dimensional_latent_and_walks_between_images():
    torch.manual_seed(0)
    model = build_model(MODEL, 1, (28, 28)).eval()
    images = torch.rand(5, 1, 28, 28)
    assert latent_means(model, images).shape == (5, 2)
    strip = interpolate(model, images[0], images[1], steps=7)
    assert strip.shape == (7, 1, 28, 28) and np.all((strip >= 0) & (strip <= 1))


def test_the_interpolation_runs_between_two_classes():
    assert interpolation_ends(np.array([3, 3, 5, 3])) == (0, 2)
    assert interpolation_ends(np.array([4, 4])) == (0, 1)
