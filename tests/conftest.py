"""Shared fixtures: where the shared datasets live, and tiny configurations that train in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar-10-batches-py"


@pytest.fixture
def cifar_dir() -> Path:
    if not (SHARED_CIFAR / "data_batch_1").is_file():
        pytest.skip(f"the shared CIFAR-10 subset is not at {SHARED_CIFAR}")
    return SHARED_CIFAR


TINY_SPACE = """\
# runner tune --space tiny.yaml (test-sized)
tune:
  samples: 2
  max_epochs: 2
  grace_period: 2
data:
  dataset: cifar10
  val_images: 100
  val_pairs: 100
model:
  family: unet
  base_width: {choice: [4, 8]}
  depth: 2
  output: consistent
train:
  lr: {loguniform: [1.0e-3, 3.0e-3]}
  batch_size: 32
  epoch_pairs: 256
"""


@pytest.fixture
def processes(tmp_path):
    """Starts `runner` and Ray as real processes; stops every one it started, and no other."""
    from tests.ray_processes import MarkedProcesses

    marked = MarkedProcesses(tmp_path)
    yield marked
    marked.stop_all()


@pytest.fixture
def tiny_space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


# Installed as sitecustomize in a subprocess: any import of a training package fails, as
# in an environment made by a plain `pip install .`.
IMPORT_BLOCKER = """
import importlib.abc, sys

BLOCKED = {"torch", "ray", "optuna", "onnx"}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: separate must not need it")
        return None

sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture
def training_packages_blocked(tmp_path) -> dict[str, str]:
    """Environment for a subprocess in which torch, ray, optuna and onnx cannot be imported."""
    blocker = tmp_path / "import-blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(IMPORT_BLOCKER)
    return {**os.environ, "PYTHONPATH": str(blocker)}
