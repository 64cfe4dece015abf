"""`runner report` on real tiny experiments trained on a generated folder of images.

The same runs show that a folder of the user's own images works end to end: `runner tune`
(Ray Tune + Optuna) and `runner train` both take `data.dataset: folder` with --data-dir.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.synthetic_data import write_image_folder

BIN = Path(sys.executable).parent
SEARCH_FIGURES = {"curves.png", "best.png", "cost.png", "separations.png", "history.png", "importances.png"}

FOLDER_SPACE = """\
# runner tune --space folder.yaml --data-dir IMAGES (test-sized)
tune:
  samples: 2
  max_epochs: 2
  grace_period: 2
  points_to_evaluate:
    - {model.family: unet}
    - {model.family: ae}
data:
  dataset: folder
  image_size: 16
  val_images: 16
  val_pairs: 32
model:
  family: {choice: [unet, ae]}
  base_width: {choice: [4, 8]}
  depth: 2
  latent_dim: 16
train:
  lr: {loguniform: [1.0e-3, 4.0e-3]}
  batch_size: 16
"""

FOLDER_CONFIG = """\
# runner train --config folder-one.yaml --data-dir IMAGES (test-sized)
data:
  dataset: folder
  channels: 1
  image_size: 16
  val_images: 16
  val_pairs: 32
model:
  family: unet
  widths: [4, 8]
  bottleneck: 16
train:
  epochs: 2
  batch_size: 16
"""


def run(command: list[str], expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=600)
    assert result.returncode == expect, f"{command[:2]} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("own") / "images")


@pytest.fixture(scope="module")
def searched(tmp_path_factory, images) -> Path:
    """A real two-trial search (one U-Net, one autoencoder) on the folder of images."""
    root = tmp_path_factory.mktemp("search")
    (root / "folder.yaml").write_text(FOLDER_SPACE)
    run(["runner", "tune", "--space", str(root / "folder.yaml"), "--data-dir", str(images),
         "--name", "own-images", "--results", str(root / "R")])
    return root / "R"


def figures_of(experiment: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(experiment.glob("*.png"))}


def assert_real_distinct_pngs(figures: dict[str, bytes], experiment: Path) -> None:
    for name in figures:
        with Image.open(experiment / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
            # A drawn figure uses more than a couple of colours.
            assert len(np.unique(np.asarray(image.convert("L")))) > 8, name
    assert len({hashlib.sha256(content).hexdigest() for content in figures.values()}) == len(figures)


def test_report_of_a_search_writes_markdown_and_six_distinct_figures(searched):
    result = run(["runner", "report", "--experiment", "own-images", "--results", str(searched)])
    experiment = searched / "own-images"
    figures = figures_of(experiment)
    assert set(figures) == SEARCH_FIGURES
    assert_real_distinct_pngs(figures, experiment)
    markdown = (experiment / "report.md").read_text()
    for name in SEARCH_FIGURES:
        assert f"]({name})" in markdown
    assert "Not drawn" not in markdown
    assert "| unet |" in markdown and "| ae |" in markdown and "Average" in markdown
    assert "best trial per family" in result.stdout and "6 figures" in result.stdout
    assert "the Pareto trials" in result.stdout and "### The Pareto trials" in markdown


def test_report_defaults_to_the_latest_experiment(searched):
    result = run(["runner", "report", "--results", str(searched)])
    assert "own-images" in result.stdout


def test_train_on_a_folder_and_report_it_without_a_study(tmp_path, images):
    (tmp_path / "folder-one.yaml").write_text(FOLDER_CONFIG)
    run(["runner", "train", "--config", str(tmp_path / "folder-one.yaml"), "--data-dir", str(images),
         "--name", "one", "--results", str(tmp_path / "R")])
    experiment = tmp_path / "R" / "one"
    epochs = [json.loads(line) for line in (experiment / "trial_0" / "result.json").read_text().splitlines()]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert all(np.isfinite(row["val_pit_psnr"]) and row["val_baseline_psnr"] > 0 for row in epochs)

    result = run(["runner", "report", "--experiment", "one", "--results", str(tmp_path / "R")])
    figures = figures_of(experiment)
    assert set(figures) == {"curves.png", "best.png", "cost.png", "separations.png"}
    assert_real_distinct_pngs(figures, experiment)
    assert "no Optuna study" in (experiment / "report.md").read_text()
    assert "left out: Optuna" in result.stdout


def test_report_of_a_missing_experiment_is_one_line(tmp_path):
    result = run(["runner", "report", "--experiment", "nothing", "--results", str(tmp_path)], expect=2)
    assert result.stderr.startswith("runner: error: no experiment 'nothing'")
    assert len(result.stderr.strip().splitlines()) == 1
