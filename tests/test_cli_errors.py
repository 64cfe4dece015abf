"""Bad input through the real commands: each ends with one clear line on stderr, a
non-zero exit, no traceback, and nothing half-written. `separate` and the runs that start
Ray are processes of their own; the rest of `runner` runs through its main() here. The
export and `separate` cases use a real model trained and exported here at a tiny size; the
checkpoint and ONNX cases include a checkpoint whose pickle would run code and an ONNX
file tampered with after export.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner.inference.sidecar import read_sidecar, sidecar_path, write_sidecar
from tests.ray_processes import REPO, MarkedProcesses, Run, assert_one_error_line, run_runner, runner_here
from tests.tiny_spaces import tiny_trial

SEPARATE = Path(sys.executable).parent / "separate"
SEARCH = "# runner tune --space bad.yaml (test-sized)\n" + tiny_trial()


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    marked = MarkedProcesses(tmp_path_factory.mktemp("marked"))
    yield marked
    marked.stop_all()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, cifar_dir) -> Path:
    """results/trained (one `runner train` epoch) and export/trained-unet.onnx + .json."""
    from runner.cli import main

    root = tmp_path_factory.mktemp("exported")
    (root / "tiny.yaml").write_text("# runner train --config tiny.yaml (test-sized)\n" + tiny_trial(lr="2.0e-3"))
    assert main(["train", "--config", str(root / "tiny.yaml"), "--max-epochs", "1", "--name", "trained",
                 "--results", str(root / "results"), "--data-dir", str(cifar_dir)]) == 0
    assert main(["export", "--experiment", "trained", "-o", str(root / "export"), "--results", str(root / "results")]) == 0
    return root


def separate(*args) -> Run:
    done = subprocess.run([str(SEPARATE), *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300)
    return Run(done.returncode, done.stdout, done.stderr)


def only_error_line(run: Run, *fragments: str, prefix: str = "runner: error: ") -> None:
    """The error is the only thing on stderr."""
    line = assert_one_error_line(run, *fragments, prefix=prefix)
    assert run.err.strip() == line, run.err


# ---- runner tune: the search space, the data, the flags -----------------------------------


@pytest.mark.parametrize("text, fragments", [
    (SEARCH.replace("  widths: [4, 8]\n", "  widths: [4, 8\n"), ["malformed YAML", "line 9", "flow sequence that begins on line 8"]),
    (SEARCH.replace("  family: unet", "  famly: unet"), ["unknown key 'famly'", "valid keys: family, widths"]),
    (SEARCH.replace("  family: unet", "  family: gan"), ["model.family is 'gan'", "valid values: ae, vae, unet"]),
    (SEARCH.replace("[1.0e-3, 5.0e-3]", "[5.0e-3, 1.0e-3]"), ["train.lr", "empty range [0.005, 0.001]"]),
    (SEARCH.replace("data:", "dta:"), ["unknown section 'dta'", "valid sections: data, model, train"]),
], ids=["malformed-yaml", "unknown-key", "unknown-family", "empty-range", "unknown-section"])
def test_bad_search_space_is_one_line(tmp_path, capsys, text, fragments):
    (tmp_path / "bad.yaml").write_text(text)

    run = runner_here(capsys, "tune", "--space", tmp_path / "bad.yaml", "--name", "x", "--results", tmp_path / "R")

    only_error_line(run, *fragments)
    assert not (tmp_path / "R").exists()


def cifar_copy(tmp_path: Path, cifar_dir: Path) -> Path:
    copy = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, copy)
    return copy


def truncated(folder: Path) -> Path:
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    return folder


def garbled(folder: Path) -> Path:
    (folder / "data_batch_2").write_bytes(os.urandom(4096))
    return folder


@pytest.mark.parametrize("make_data_dir, fragments", [
    (lambda tmp, cifar: tmp / "nowhere", ["nowhere"]),
    (lambda tmp, cifar: (tmp / "empty").mkdir() or tmp / "empty", ["empty"]),
    (lambda tmp, cifar: truncated(cifar_copy(tmp, cifar)), ["data_batch_3"]),
    (lambda tmp, cifar: garbled(cifar_copy(tmp, cifar)), ["data_batch_2"]),
], ids=["missing", "empty", "truncated-file", "corrupt-file"])
def test_bad_data_dir_is_one_line_before_ray_starts(tmp_path, cifar_dir, capsys, make_data_dir, fragments):
    (tmp_path / "space.yaml").write_text(SEARCH)
    data_dir = make_data_dir(tmp_path, cifar_dir)

    run = runner_here(capsys, "tune", "--space", tmp_path / "space.yaml", "--data-dir", data_dir,
                     "--name", "x", "--results", tmp_path / "R")

    only_error_line(run, *fragments)
    assert not (tmp_path / "R").exists()


def test_results_uri_is_refused_with_what_works(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text(SEARCH)

    run = runner_here(capsys, "tune", "--space", tmp_path / "space.yaml", "--results", "s3://bucket/runs")

    assert_one_error_line(run, "s3://bucket/runs is a URI", "Scaling out", prefix="runner tune: error: ")


@pytest.mark.parametrize("value, fragment", [("0", "must be at least 1, got 0"), ("two", "'two' is not a whole number")])
def test_a_count_flag_takes_whole_numbers_of_at_least_one(tmp_path, capsys, value, fragment):
    """runner's and separate's count flags share one argparse type and its one-line errors."""
    run = runner_here(capsys, "tune", "--space", "unet", "--samples", value)
    assert_one_error_line(run, "--samples", fragment, prefix="runner tune: error: ")

    run = separate(tmp_path / "avg.png", "-o", tmp_path / "out", "--batch-size", value)
    assert_one_error_line(run, "--batch-size", fragment, prefix="separate: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.timeout(300)
def test_gpus_per_trial_without_gpus_is_one_line(tmp_path, cifar_dir, processes):
    (tmp_path / "space.yaml").write_text(SEARCH)

    run = run_runner(processes, "tune", "--space", tmp_path / "space.yaml", "--gpus-per-trial", 1,
                     "--data-dir", cifar_dir, "--name", "x", "--results", tmp_path / "R")

    assert_one_error_line(run, "--gpus-per-trial 1 asks for more GPUs than the cluster has (0)")
    assert not (tmp_path / "R" / "x").exists()


def test_unreachable_cluster_address_is_one_line_not_a_hang(tmp_path, cifar_dir, processes):
    (tmp_path / "space.yaml").write_text(SEARCH)

    run = run_runner(processes, "tune", "--space", tmp_path / "space.yaml", "--address", "127.0.0.1:1",
                     "--data-dir", cifar_dir, "--name", "x", "--results", tmp_path / "R", timeout=120)

    only_error_line(run, "nothing answers at --address 127.0.0.1:1", "ray start --head")


# ---- runner export: missing, corrupt and hostile checkpoints, where it writes ----------------


def experiment_copy(exported: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(exported / "results", results)
    return results


def checkpoint_file(results: Path) -> Path:
    return next(results.glob("trained/trial_0/checkpoint_*/model.pt"))


class RunsCode:
    """Pickles to a call of os.system: loading it with plain pickle would run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_export_without_a_finished_trial_is_one_line(tmp_path, exported, capsys):
    (tmp_path / "results" / "unfinished").mkdir(parents=True)
    shutil.copy(exported / "results" / "trained" / "experiment.json", tmp_path / "results" / "unfinished")

    run = runner_here(capsys, "export", "--experiment", "unfinished", "--results", tmp_path / "results", "-o", tmp_path / "E")

    only_error_line(run, "unfinished has no checkpoint yet")
    assert not (tmp_path / "E").exists()


def test_export_of_a_truncated_checkpoint_is_one_line(tmp_path, exported, capsys):
    results = experiment_copy(exported, tmp_path)
    model = checkpoint_file(results)
    model.write_bytes(model.read_bytes()[:1000])

    run = runner_here(capsys, "export", "--experiment", "trained", "--results", results, "-o", tmp_path / "E")

    only_error_line(run, "corrupt or truncated", str(model))
    assert not (tmp_path / "E").exists()


def test_checkpoint_whose_pickle_would_run_code_is_refused(tmp_path, exported, capsys):
    results = experiment_copy(exported, tmp_path)
    ran = tmp_path / "the-pickle-ran"
    torch.save({"format": 1, "model": RunsCode(f"touch {ran}")}, checkpoint_file(results))

    run = runner_here(capsys, "export", "--experiment", "trained", "--results", results, "-o", tmp_path / "E")

    only_error_line(run, "refusing to load", "not a plain-weights checkpoint")
    assert not ran.exists()
    assert not (tmp_path / "E").exists()


def test_export_to_a_folder_that_cannot_be_written_is_one_line(tmp_path, exported, capsys):
    run = runner_here(capsys, "export", "--experiment", "trained", "--results", exported / "results",
                     "-o", "/proc/self/export")

    only_error_line(run, "cannot create output directory /proc/self/export", "-o DIR")


def test_export_keeps_an_existing_export_without_overwrite(tmp_path, exported, capsys):
    shutil.copytree(exported / "export", tmp_path / "E")
    before = {p.name: p.read_bytes() for p in (tmp_path / "E").iterdir()}

    run = runner_here(capsys, "export", "--experiment", "trained", "--results", exported / "results", "-o", tmp_path / "E")

    only_error_line(run, "trained-unet.onnx already exists", "--overwrite")
    assert {p.name: p.read_bytes() for p in (tmp_path / "E").iterdir()} == before


def test_export_leaves_exactly_the_model_and_its_sidecar(exported):
    assert sorted(p.name for p in (exported / "export").iterdir()) == ["trained-unet.json", "trained-unet.onnx"]


# ---- separate: the model file, the images, where it writes -------------------------------


@pytest.fixture
def model_copy(tmp_path, exported) -> Path:
    shutil.copytree(exported / "export", tmp_path / "E")
    return tmp_path / "E" / "trained-unet.onnx"


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "in" / "mix.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_tampered_onnx_is_refused_by_separate(tmp_path, model_copy, image):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))

    run = separate(image, "-o", tmp_path / "out", "--model", model_copy)

    only_error_line(run, "sha256", prefix="separate: error: ")
    assert not list((tmp_path / "out").glob("*.png"))


def test_corrupt_onnx_with_a_matching_sidecar_is_one_line(tmp_path, model_copy, image):
    info = read_sidecar(sidecar_path(model_copy))
    model_copy.write_bytes(b"this is not an onnx model" * 40)
    write_sidecar(model_copy, {key: value for key, value in info.items() if key not in ("format", "file", "sha256")})

    run = separate(image, "-o", tmp_path / "out", "--model", model_copy)

    only_error_line(run, str(model_copy), prefix="separate: error: ")
    assert not list((tmp_path / "out").glob("*.png"))


def test_missing_onnx_is_one_line(tmp_path, image):
    run = separate(image, "-o", tmp_path / "out", "--model", tmp_path / "nope.onnx")

    only_error_line(run, "nope.onnx does not exist", "runner export", prefix="separate: error: ")


def write_bad_image(kind: str, path: Path) -> Path:
    if kind == "not-an-image":
        path.write_text("hello, I am text with a .png name\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated-png":
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "far-too-large":
        Image.new("L", (5000, 5000)).save(path)  # 25 megapixels, small on disk
    return path


@pytest.mark.parametrize("kind, fragment", [
    ("not-an-image", "not an image"), ("empty", "empty"), ("truncated-png", "truncated"), ("far-too-large", "pixels"),
])
def test_bad_image_is_one_line_and_writes_nothing(tmp_path, model_copy, kind, fragment):
    bad = write_bad_image(kind, tmp_path / "bad.png")

    run = separate(bad, "-o", tmp_path / "out", "--model", model_copy)

    line = assert_one_error_line(run, "bad.png", prefix="separate: error: ")
    assert fragment in line.lower(), line
    assert not list((tmp_path / "out").glob("*"))


def test_separate_into_a_folder_that_cannot_be_written_is_one_line(tmp_path, model_copy, image):
    run = separate(image, "-o", "/proc/self", "--model", model_copy)

    only_error_line(run, "cannot write to /proc/self", prefix="separate: error: ")


def test_separate_keeps_existing_outputs_without_overwrite(tmp_path, model_copy, image):
    first = separate(image, "-o", tmp_path / "out", "--model", model_copy)
    assert first.code == 0, first.err
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    again = separate(image, "-o", tmp_path / "out", "--model", model_copy)

    only_error_line(again, "mix_1.png already exists", "--overwrite", prefix="separate: error: ")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(before) == ["mix_1.png", "mix_2.png"]
