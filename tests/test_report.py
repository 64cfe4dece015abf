"""`runner report` on real tiny experiments trained on a generated folder of images.

The same runs show that a folder of the user's own images works end to end: `runner tune`
(the session's shared search, tests/conftest.py) and `runner train` both take
`data.dataset: folder` with --data-dir.
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

BIN = Path(sys.executable).parent
SEARCH_FIGURES = {"curves.png", "best.png", "cost.png", "separations.png", "history.png", "importances.png"}

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


def figures_of(experiment: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(experiment.glob("*.png"))}


def assert_real_distinct_pngs(figures: dict[str, bytes], experiment: Path) -> None:
    for name in figures:
        with Image.open(experiment / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
            # A drawn figure uses more than a couple of colours.
            assert len(np.unique(np.asarray(image.convert("L")))) > 8, name
    assert len({hashlib.sha256(content).hexdigest() for content in figures.values()}) == len(figures)


def test_report_of_a_search_writes_markdown_and_six_distinct_figures(finished_search):
    result = run(["runner", "report", "--experiment", finished_search.name, "--results", str(finished_search.results)])
    experiment = finished_search.experiment
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


def test_report_defaults_to_the_latest_experiment(finished_search):
    result = run(["runner", "report", "--results", str(finished_search.results)])
    assert finished_search.name in result.stdout


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
