"""Shared fixtures: a synthetic CIFAR-10 for plumbing, real images for learning claims, and
tiny configurations that train in seconds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.synthetic_data import write_cifar_folder

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar-10-batches-py"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET_FASHION_MNIST = "apt-get install dataset-fashion-mnist, or bash scripts/setup.sh as root"
NO_REAL_IMAGES = (
    f"needs real images to make a learning claim, and has neither the CIFAR-10 subset CI keeps at {SHARED_CIFAR} "
    "(the cifar-10-batches-py folder of the official cifar-10-python.tar.gz serves too) "
    f"nor Fashion-MNIST at {FASHION_MNIST} ({HOW_TO_GET_FASHION_MNIST})"
)

# The synthetic CIFAR-10 every plumbing test reads: 1,000 training images (val_images: 100
# leaves 900 to train on), and 500 test images, as many as the shared subset's test split.
SYNTHETIC_TRAIN_PER_BATCH, SYNTHETIC_TEST = 200, 500


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """A synthetic CIFAR-10 in the official python-batches layout; tests must not change it."""
    folder = tmp_path_factory.mktemp("synthetic") / "cifar-10-batches-py"
    return write_cifar_folder(folder, SYNTHETIC_TRAIN_PER_BATCH, SYNTHETIC_TEST)


@dataclass(frozen=True)
class RealImages:
    """A real dataset to learn from, as `data.dataset` and `--data-dir` name it."""

    dataset: str
    data_dir: Path


@pytest.fixture(scope="session")
def real_images() -> RealImages:
    """The shared CIFAR-10 subset when present, else Debian's Fashion-MNIST, else a skip that says how to get one."""
    if (SHARED_CIFAR / "data_batch_1").is_file():
        return RealImages("cifar10", SHARED_CIFAR)
    if (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return RealImages("fashion-mnist", FASHION_MNIST)
    pytest.skip(NO_REAL_IMAGES)


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
