"""The whole path a user walks, for real at tiny sizes: tune (Ray) -> export (ONNX) -> separate (no torch).

The plumbing runs on the session's shared search of a folder of generated images; the claim that the separated images beat the
Average baseline is made once, on real images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.inference.catalog import DEFAULT_RECORD
from runner.results import find_checkpoints

BIN = Path(sys.executable).parent


def run(command: list[str], env=None, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_tune_runs_every_trial_and_keeps_the_study(finished_search):
    import optuna

    checkpoints = find_checkpoints(finished_search.experiment)
    assert len({c.trial for c in checkpoints}) == 2
    assert all(c.metrics["val_baseline_psnr"] > 0 for c in checkpoints)
    study = optuna.load_study(study_name=finished_search.name, storage=f"sqlite:///{finished_search.experiment / 'study.db'}")
    assert len(study.trials) == 2


def test_export_mixtures_separate_without_torch_and_score(finished_search, cifar_dir, tmp_path, training_packages_blocked):
    run(["runner", "export", "--best", "--experiment", finished_search.name, "--results", str(finished_search.results),
         "-o", str(tmp_path / "E"), "--set-default"])  # its score cannot beat the shipped model's, and it is the one under test
    (model,) = (tmp_path / "E").glob("*.onnx")
    assert sorted(p.name for p in (tmp_path / "E").iterdir()) == sorted([model.name, f"{model.stem}.json", DEFAULT_RECORD])
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["channels"] == 3 and sidecar["experiment"] == finished_search.name and len(sidecar["sha256"]) == 64

    score = separate_and_score(tmp_path / "E", "cifar10", cifar_dir, tmp_path, training_packages_blocked)
    assert score["pairs"] == 40 and score["pit_psnr"] > 0 and score["baseline_psnr"] > 0


def test_the_separated_test_mixtures_beat_the_average_on_real_images(real_images, tmp_path, training_packages_blocked):
    """The user's whole path, train -> export -> `separate`, on real images: better than both outputs = mixture."""
    (tmp_path / "tiny.yaml").write_text(
        f"data: {{dataset: {real_images.dataset}, val_images: 100, val_pairs: 100}}\n"
        "model: {family: unet, widths: [4, 8], bottleneck: 16, output: consistent}\n"
        "train: {epochs: 2, batch_size: 32, epoch_pairs: 256, lr: 2.0e-3, threads: 1}\n"
    )
    run(["runner", "train", "--config", str(tmp_path / "tiny.yaml"), "--data-dir", str(real_images.data_dir),
         "--name", "real", "--results", str(tmp_path / "R")])
    run(["runner", "export", "--experiment", "real", "--results", str(tmp_path / "R"), "-o", str(tmp_path / "E"),
         "--set-default"])
    score = separate_and_score(tmp_path / "E", real_images.dataset, real_images.data_dir, tmp_path, training_packages_blocked)
    assert score["pit_psnr"] > score["baseline_psnr"]


def separate_and_score(models: Path, dataset: str, data_dir: Path, work: Path, blocked_env) -> dict:
    """40 test mixtures as PNGs, separated by `separate` where torch cannot be imported, scored by `runner score`."""
    run(["runner", "mixtures", "--dataset", dataset, "--data-dir", str(data_dir), "--count", "40", "-o", str(work / "P")])
    run(["separate", str(work / "P" / "mixtures"), "-o", str(work / "O"), "--models-dir", str(models)], env=blocked_env)
    assert len(list((work / "O").glob("*_1.png"))) == len(list((work / "O").glob("*_2.png"))) == 40
    run(["runner", "score", "--pairs", str(work / "P"), "--outputs", str(work / "O"), "--json", str(work / "score.json")])
    return json.loads((work / "score.json").read_text())


def test_runner_train_makes_an_experiment_export_understands(cifar_dir, tmp_path):
    config = tmp_path / "one.yaml"
    config.write_text(
        "data: {dataset: cifar10, val_images: 100, val_pairs: 100}\n"
        "model: {family: ae, widths: [4, 8], bottleneck: 16, latent_dim: 32}\n"
        "train: {epochs: 2, batch_size: 32, epoch_pairs: 128}\n"
    )
    run(["runner", "train", "--config", str(config), "--data-dir", str(cifar_dir), "--name", "one", "--results", str(tmp_path / "R")])
    run(["runner", "export", "--best", "--experiment", "one", "--results", str(tmp_path / "R"), "-o", str(tmp_path / "E")])
    sidecar = json.loads((tmp_path / "E" / "one-ae.json").read_text())
    assert sidecar["dynamic_spatial"] is False and sidecar["image_size"] == [32, 32]
    history = (tmp_path / "R" / "one" / "trial_0" / "result.json").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2]
