"""A plain `pip install .` into a clean virtual environment: no torch, no Ray, no optuna.

`separate` must work there, and `runner` must say which install line it needs instead of
failing with a traceback. The wheel is built from this checkout, as a user's pip would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_separate import make_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel a user's `pip install .` builds from this checkout."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)], check=True)
    (built,) = wheels.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def plain_install(wheel, tmp_path_factory) -> Path:
    """The bin/ folder of a fresh virtual environment holding a non-editable `pip install .`."""
    root = tmp_path_factory.mktemp("plain-install")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    return python.parent


@pytest.fixture(scope="module")
def installed_runner(wheel, tmp_path_factory) -> dict[str, str]:
    """An environment whose `runner` package is the wheel's, not this checkout (the training
    packages come from this environment): what a non-editable `pip install ".[train]"` gives."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return {**os.environ, "PYTHONPATH": str(target)}


def runner_cli(env: dict[str, str], cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_separate_works_without_torch(plain_install, tmp_path):
    bin_dir = plain_install
    missing = subprocess.run([str(bin_dir / "python"), "-c", "import torch"], capture_output=True, text=True)
    model = make_model(tmp_path / "export", "tiny", channels=3)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "mix.png")

    result = subprocess.run([str(bin_dir / "separate"), "mix.png", "-o", "out", "--model", str(model)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert missing.returncode != 0  # the environment really has no torch
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "mix_1.png").is_file() and (tmp_path / "out" / "mix_2.png").is_file()


def test_runner_without_the_training_extra_prints_the_install_line(plain_install, tmp_path):
    (tmp_path / "space.yaml").write_text("model: {family: unet}\n")

    result = subprocess.run([str(plain_install / "runner"), "tune", "--space", "space.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs the training extra" in lines[0]
    assert 'pip install "separation-runner[train]"' in lines[0]


def test_the_wheel_is_small(wheel):
    assert wheel.stat().st_size < 20 * 2**20


def test_built_in_spaces_by_name_from_any_directory(installed_runner, tmp_path, cifar_dir):
    where = runner_cli(installed_runner, tmp_path, "spaces")
    located = subprocess.run([sys.executable, "-c", "import runner; print(runner.__file__)"],
                             cwd=tmp_path, env=installed_runner, capture_output=True, text=True)
    assert not located.stdout.startswith(str(REPO))  # the wheel's copy, not the checkout
    assert where.returncode == 0 and any(line.split()[0] == "unet" for line in where.stdout.splitlines())

    # A short epoch, and ASHA's grace period (2 in unet.yaml) within the one epoch.
    overrides = ["train.lr=2e-3", "train.epoch_pairs=128", "tune.grace_period=1"]
    run = runner_cli(installed_runner, tmp_path, "tune", "--space", "unet.yaml", "--data-dir", cifar_dir, "--samples", 2,
                     "--max-epochs", 1, "--name", "n", "--results", tmp_path / "results", *overrides)

    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for path in (tmp_path / "results" / "n").glob("*/result.json")
            for line in path.read_text().splitlines()]
    assert len({row["trial_id"] for row in rows}) == 2
    assert {row["config"]["trial"]["train"]["lr"] for row in rows} == {0.002}
    experiment = json.loads((tmp_path / "results" / "n" / "experiment.json").read_text())
    assert experiment["request"]["overrides"][: len(overrides)] == overrides   # then the flags, as overrides
    assert experiment["request"]["space_source"] == "built-in unet"


@pytest.mark.parametrize("override", ["train.batch_size=0", "model.nope=1"])
def test_a_bad_override_is_one_line_and_exit_2(installed_runner, tmp_path, override):
    run = runner_cli(installed_runner, tmp_path, "tune", "--space", "unet", override)

    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("runner: error:")


SHIPPED = REPO / "runner" / "inference" / "shipped"
SHIPPED_MIN_PSNR = 18.5  # dB on the 500 shared CIFAR-10 test pairs: the bar the shipped model must clear
WHEEL_MAX_BYTES = 20 * 1024 * 1024


def test_wheel_stays_small(wheel):
    assert wheel.stat().st_size < WHEEL_MAX_BYTES, f"{wheel.name} is {wheel.stat().st_size / 2**20:.1f} MiB"


def test_shipped_model_separates_the_shared_test_pairs_from_a_plain_install(plain_install, tmp_path):
    from tests.conftest import SHARED_CIFAR

    if not any(SHIPPED.glob("*.onnx")):
        pytest.skip(f"this checkout ships no model yet ({SHIPPED} is empty; scripts/ship_model.py makes it)")
    if not (SHARED_CIFAR / "test_batch").is_file():
        pytest.skip(f"the shipped model's quality is measured on the shared CIFAR-10 test images, not found at {SHARED_CIFAR}")
    pairs, work = tmp_path / "pairs", tmp_path / "empty"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "runner.cli", "mixtures", "--dataset", "cifar10", "--data-dir", str(SHARED_CIFAR.parent),
                    "--count", "500", "-o", str(pairs)], check=True, capture_output=True)

    separated = subprocess.run([str(plain_install / "separate"), str(pairs / "mixtures"), "-o", "out"],
                               cwd=work, capture_output=True, text=True, timeout=600)
    score = tmp_path / "score.json"
    subprocess.run([sys.executable, "-m", "runner.cli", "score", "--pairs", str(pairs), "--outputs", str(work / "out"),
                    "--json", str(score)], check=True, capture_output=True)

    assert separated.returncode == 0, separated.stderr
    assert separated.stdout.splitlines()[0].startswith("model: cifar10-unet, shipped with separation-runner (default: ")
    assert separated.stderr == ""  # 32x32 test images: no size warning
    scores = json.loads(score.read_text())
    assert scores["pit_psnr"] >= SHIPPED_MIN_PSNR, scores
