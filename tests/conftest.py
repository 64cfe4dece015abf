"""Shared fixtures: a synthetic CIFAR-10 for plumbing, real images for learning claims, and
tiny configurations that train in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import tiers
from tests.synthetic_data import write_cifar_folder, write_image_folder

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar-10-batches-py"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET_FASHION_MNIST = "apt-get install dataset-fashion-mnist, or bash scripts/setup.sh as root"
NO_REAL_IMAGES = (
    f"needs real images to make a learning claim, and has neither the CIFAR-10 subset CI keeps at {SHARED_CIFAR} "
    "(the cifar-10-batches-py folder of the official cifar-10-python.tar.gz serves too) "
    f"nor Fashion-MNIST at {FASHION_MNIST} ({HOW_TO_GET_FASHION_MNIST})"
)


def pytest_configure(config: pytest.Config) -> None:
    tiers.register(config)
    # A shell starts a background job with SIGINT ignored, and a Python started so keeps it
    # ignored, as do the processes it starts: a test's Ctrl-C to its child would do nothing.
    # Python's own handler here makes every child start with SIGINT at its default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.mark(items)


@pytest.fixture(autouse=True)
def _processes_only_where_marked(request, monkeypatch) -> None:
    tiers.guard_unmarked_processes(request.node, monkeypatch)


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


# The one search that every test reading a finished search shares: both kinds of family
# (a U-Net, which takes any size, and an autoencoder, which takes only its own), searched
# widths and learning rates, on a folder of the user's own kind of images.
SHARED_SPACE = """\
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
  image_size: 32          # CIFAR-10's size, so either family's export separates its mixtures
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
SHARED_SEARCHED = {"model.family", "model.base_width", "train.lr"}


@dataclass(frozen=True)
class FinishedSearch:
    """A finished `runner tune`: where its results are, its name, and the images it learnt from."""

    results: Path
    name: str
    images: Path

    @property
    def experiment(self) -> Path:
        return self.results / self.name


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """A folder of generated png, jpg and webp images of assorted sizes and modes; tests must not change it."""
    return write_image_folder(tmp_path_factory.mktemp("own") / "images")


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, images) -> FinishedSearch:
    """A real two-trial `runner tune` (Ray Tune + Optuna + ASHA) of SHARED_SPACE, run once for
    every test that only reads a finished search; tests may add files beside it (a report,
    an export elsewhere) but must not change what the search wrote."""
    root = tmp_path_factory.mktemp("search")
    (root / "folder.yaml").write_text(SHARED_SPACE)
    done = subprocess.run([str(Path(sys.executable).parent / "runner"), "tune", "--space", str(root / "folder.yaml"),
                           "--data-dir", str(images), "--name", "own-images", "--results", str(root / "R")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"runner tune failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return FinishedSearch(root / "R", "own-images", images)


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
