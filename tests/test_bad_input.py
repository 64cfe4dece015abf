"""Every bad input a new user tried, in one place.

Configs and the command line: each ends with one `runner: error:` line, its documented
exit code (2 for bad input, 1 for a run that diverged) and no traceback, and leaves nothing
in the way of the next command. Every hint those lines print that is cheap to follow is
followed here. The commands run in-process through `runner.cli.main` (the same code as the
`runner` executable); only the demo script runs as a real process.

Images through `separate`: each gets exactly one line on stderr and the exit status the
README documents (0 separated, 1 some inputs failed):
- a truncated image, even one far from the training size: its error alone, not the size
  warning and then the error;
- an image over the default --max-pixels (a 25 MP header): one line, refused before decoding;
- RGBA and animated (GIF, WebP) inputs: one note each saying what was used, and outputs.
The large images that used to need 10 GB are `benchmarks/inference.py --sections large`'s.
"""

from __future__ import annotations

import io
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner.cli import main
from runner.inference import Separator, UnusedWarning
from runner.results import EXPERIMENT_FILE
from runner.search import SINGLE_MACHINE_SWITCH
from tests.conftest import REPO
from tests.test_separate import assert_one_error, cli, make_model, png_declaring, random_pixels  # noqa: F401 (fixtures)
from tests.tiny_spaces import tiny_trial

TRAIN = "# runner train --config tiny.yaml (test-sized)\n" + tiny_trial(lr="2.0e-3")
SEARCH = "# runner tune --space tiny.yaml (test-sized)\n" + tiny_trial()
# A KL term weighted 1e38 overflows float32: the VAE's loss is NaN in the epoch that has it.
DIVERGING_VAE = TRAIN.replace("family: unet", "family: vae") + "  kl_weight: 1.0e+38\n"


@pytest.fixture(autouse=True)
def private_ray_already_on_loopback(monkeypatch):
    """`runner tune` in-process would set this in the test process's environment; the
    errors here come before any Ray starts."""
    monkeypatch.setenv(SINGLE_MACHINE_SWITCH, "0")


def fails(capsys, *argv, code: int = 2, only_line: bool = True) -> str:
    """Run `runner *argv`; it exits with `code` and its one error line (the only stderr
    line, unless a run's progress bar came first), which is returned."""
    assert main([str(arg) for arg in argv]) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    errors = [line for line in err.splitlines() if line.startswith("runner: error: ")]
    assert len(errors) == 1, err
    if only_line:
        assert err.strip() == errors[0], err
    return errors[0]


def follow(capsys, line: str, marker: str, *extra) -> int:
    """Run the command a line advises after `marker` (it starts with `runner`)."""
    command = shlex.split(line.split(marker, 1)[1])
    assert command[0] == "runner", line
    code = main([*command[1:], *map(str, extra)])
    capsys.readouterr()
    return code


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_dir) -> Path:
    """results/ holding `good`: one epoch of `runner train`, the experiment a user already has."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text(TRAIN)
    assert main(["train", "--config", str(root / "tiny.yaml"), "--max-epochs", "1", "--name", "good",
                 "--results", str(root / "R"), "--data-dir", str(cifar_dir)]) == 0
    return root / "R"


def results_copy(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "R")
    return tmp_path / "R"


# ---- 1. every config read is checked before anything starts ---------------------------------


def random_bytes() -> bytes:
    data = random.Random(0).randbytes(200)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    return data


NOT_TEXT = {
    "random-bytes": (random_bytes(), "line 1 is not UTF-8 text"),
    "latin-1": ("# café\n".encode("latin-1") + TRAIN.encode(), "line 1 is not UTF-8 text (byte 0xe9)"),
    "nul-bytes": (TRAIN.replace("  batch_size", "\0  batch_size").encode(), "holds the character U+0000"),
}


@pytest.mark.parametrize("command", [("train", "--config"), ("tune", "--space")], ids=["train", "tune"])
@pytest.mark.parametrize("name", NOT_TEXT)
def test_a_config_that_is_not_utf8_text_is_one_line(tmp_path, capsys, command, name):
    data, fragment = NOT_TEXT[name]
    (tmp_path / "bad.yaml").write_bytes(data)

    line = fails(capsys, *command, tmp_path / "bad.yaml", "--results", tmp_path / "R")

    assert fragment in line and "save it as" in line.lower()
    assert not (tmp_path / "R").exists()


DUPLICATES = {
    "key": (TRAIN.replace("  batch_size: 32\n", "  batch_size: 32\n  lr: 1.0e-3\n"), "'lr' is given twice (first on line"),
    "section": (TRAIN + "train:\n  lr: 1.0e-3\n", "'train' is given twice (first on line 10)"),
    "nested": (SEARCH.replace("{loguniform: [1.0e-3, 5.0e-3]}", "{loguniform: [1.0e-3, 5.0e-3], loguniform: [1.0e-4, 1.0e-3]}"),
               "'loguniform' is given twice"),
}


@pytest.mark.parametrize("name", DUPLICATES)
def test_a_key_or_section_given_twice_is_one_line(tmp_path, capsys, name):
    text, fragment = DUPLICATES[name]
    (tmp_path / "twice.yaml").write_text(text)
    command = "tune" if name == "nested" else "train"

    line = fails(capsys, command, "--config" if command == "train" else "--space", tmp_path / "twice.yaml",
                 "--results", tmp_path / "R")

    assert fragment in line and "keep one" in line
    assert not (tmp_path / "R").exists()


def test_an_override_given_twice_inside_its_value_is_one_line(tmp_path, capsys):
    line = fails(capsys, "train", "--config", "best-cpu", "train.lr={a: 1, a: 2}", "--results", tmp_path / "R")

    assert "override train.lr={a: 1, a: 2}" in line and "'a' is given twice" in line


@pytest.mark.parametrize("command, lr, fragment", [
    ("train", "1.0e+38", "train.lr must be at most 1 "),         # overflowed AdamW's step with a traceback
    ("train", "1.0e+6", "train.lr must be at most 1 "),          # a run that learnt nothing at all
    ("tune", "{loguniform: [1.0e-4, 1.0e+6]}", "got 1000000.0"),  # the high end of a range
    ("tune", "{uniform: [0.0, 1.0e-3]}", "train.lr must be greater than 0, got 0.0"),  # and the low end
], ids=["1e38", "1e6", "range-high", "range-low"])
def test_a_learning_rate_no_step_survives_is_one_line_naming_the_bound(tmp_path, capsys, command, lr, fragment):
    (tmp_path / "lr.yaml").write_text(TRAIN.replace("lr: 2.0e-3", f"lr: {lr}"))

    line = fails(capsys, command, "--config" if command == "train" else "--space", tmp_path / "lr.yaml",
                 "--results", tmp_path / "R")

    assert fragment in line
    assert not (tmp_path / "R").exists()


def test_a_weight_decay_that_zeroes_the_weights_is_one_line(tmp_path, capsys):
    (tmp_path / "decay.yaml").write_text(TRAIN + "  weight_decay: 500.0\n")

    line = fails(capsys, "train", "--config", tmp_path / "decay.yaml", "--results", tmp_path / "R")

    assert "train.lr x train.weight_decay is 1, and AdamW scales every weight by 1 minus that" in line


def test_data_that_a_search_cannot_load_is_refused_before_it_starts(tmp_path, capsys, cifar_dir):
    """The driver loads every data: section a search can draw (runner/search/shared_data.py), so a
    choice no trial could meet stops the search at once, not trial by trial."""
    (tmp_path / "tiny.yaml").write_text(tiny_trial(val_images="{choice: [100, 100000]}"))

    line = fails(capsys, "tune", "--space", tmp_path / "tiny.yaml", "--name", "doomed", "--results", tmp_path / "R",
                 "--data-dir", cifar_dir)

    assert "training images, too few to hold out 100000 for validation; lower data.val_images" in line
    assert not (tmp_path / "R" / "doomed").exists()


# ---- a diverging run: one line, the epoch, the fix, exit 1, its good checkpoints kept --------


def test_a_run_diverging_in_its_first_epoch_is_one_line_and_leaves_nothing(tmp_path, capsys, cifar_dir):
    (tmp_path / "vae.yaml").write_text(DIVERGING_VAE)

    line = fails(capsys, "train", "--config", tmp_path / "vae.yaml", "--max-epochs", 1, "--name", "nan",
                 "--results", tmp_path / "R", "--data-dir", cifar_dir, code=1, only_line=False)

    assert "training diverged: loss became nan in epoch 1; lower train.lr or train.kl_weight" in line
    assert "nothing was kept" in line
    assert not (tmp_path / "R" / "nan").exists()


def test_a_run_diverging_after_a_good_epoch_keeps_its_checkpoint_and_the_hint_exports_it(tmp_path, capsys, cifar_dir):
    # No allowed learning rate makes the test-sized models diverge (measured up to lr 1), so
    # epoch 2 is made to diverge: the stored config of a one-epoch run gets a second epoch
    # with the overflowing KL weight, and `--resume` runs it.
    (tmp_path / "vae.yaml").write_text(TRAIN.replace("family: unet", "family: vae"))
    assert main(["train", "--config", str(tmp_path / "vae.yaml"), "--max-epochs", "1", "--name", "v",
                 "--results", str(tmp_path / "R"), "--data-dir", str(cifar_dir)]) == 0
    record = tmp_path / "R" / "v" / EXPERIMENT_FILE
    stored = json.loads(record.read_text())
    stored["config"]["train"].update(epochs=2, kl_weight=1e38)
    record.write_text(json.dumps(stored))
    capsys.readouterr()

    line = fails(capsys, "train", "--resume", "v", "--results", tmp_path / "R", code=1, only_line=False)

    assert "loss became nan in epoch 2; lower train.lr or train.kl_weight" in line
    assert "checkpoints up to epoch 1 are kept" in line
    assert follow(capsys, line, "export the best with: ", "-o", tmp_path / "E") == 0
    assert (tmp_path / "E" / "v-vae.onnx").is_file()


# ---- failures leave nothing in the way, and every hint works --------------------------------


def test_a_run_without_data_leaves_nothing_in_the_way_of_export(tmp_path, capsys, trained):
    results = results_copy(trained, tmp_path)
    (tmp_path / "tiny.yaml").write_text(TRAIN)
    (tmp_path / "empty").mkdir()

    line = fails(capsys, "train", "--config", tmp_path / "tiny.yaml", "--name", "nodata", "--results", results,
                 "--data-dir", tmp_path / "empty")

    assert "--data-dir" in line and "is empty" in line
    assert sorted(path.name for path in results.iterdir()) == ["good"]
    assert main(["export", "--best", "--results", str(results), "-o", str(tmp_path / "E")]) == 0
    assert (tmp_path / "E" / "good-unet.onnx").is_file()


def test_a_run_killed_before_its_first_checkpoint_gets_a_hint_that_works(tmp_path, capsys, trained):
    results = results_copy(trained, tmp_path)
    (results / "killed").mkdir()   # what a run killed in its first epoch leaves: its record, no checkpoint
    shutil.copy(results / "good" / EXPERIMENT_FILE, results / "killed" / EXPERIMENT_FILE)

    line = fails(capsys, "export", "--best", "--experiment", "killed", "--results", results, "-o", tmp_path / "E")

    assert "killed has no checkpoint yet" in line and f"remove {results / 'killed'} and start again" in line
    shutil.rmtree(results / "killed")
    assert main(["export", "--best", "--results", str(results), "-o", str(tmp_path / "E")]) == 0


@pytest.mark.parametrize("command", [("train", "--config"), ("tune", "--space")], ids=["train", "tune"])
def test_an_existing_name_points_at_the_command_that_continues_it(tmp_path, capsys, trained, command):
    results = results_copy(trained, tmp_path)
    (tmp_path / "tiny.yaml").write_text(TRAIN if command[0] == "train" else SEARCH)

    line = fails(capsys, *command, tmp_path / "tiny.yaml", "--name", "good", "--results", results)

    assert "experiment good already exists" in line and "pick another --name" in line
    assert follow(capsys, line, "continue it with: ") == 0   # `runner train --resume good`: it had finished


def test_resuming_a_run_as_a_search_points_at_runner_train(tmp_path, capsys, trained):
    results = results_copy(trained, tmp_path)

    line = fails(capsys, "tune", "--resume", "good", "--results", results)

    assert "good was not made by `runner tune`" in line
    assert follow(capsys, line, "continue it with: ") == 0


def test_a_warm_start_from_no_earlier_search_is_one_line(tmp_path, capsys):
    results = tmp_path / "R"
    (tmp_path / "tiny.yaml").write_text(SEARCH)
    (results / "q").mkdir(parents=True)
    (results / "q" / EXPERIMENT_FILE).write_text(json.dumps({"kind": "train"}))
    (results / "both").mkdir()
    (results / "both" / EXPERIMENT_FILE).write_text(json.dumps(
        {"kind": "tune", "request": {"settings": {"objectives": ["psnr", "macs"]}}}))
    tune = ("tune", "--space", tmp_path / "tiny.yaml", "--results", results, "--name", "new", "--warm-start")

    assert f"no experiment 'gone' in {results}; experiments there: both, q" in fails(capsys, *tune, "gone")
    assert "--warm-start q: it was made by `runner train`" in fails(capsys, *tune, "q")
    assert "--warm-start both: it optimised psnr, macs, this search psnr" in fails(capsys, *tune, "both")
    assert "put KEY=VALUE overrides before --warm-start" in fails(capsys, *tune, "q", "train.lr=2e-3")
    assert not (results / "new").exists()
    assert "drop --warm-start" in fails(capsys, "tune", "--resume", "both", "--results", results, "--warm-start", "q")


# ---- the small ones: path errors, override errors ---------------------------------------------


def test_path_errors_say_what_is_wrong(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")

    assert "is a directory, not a file" in fails(capsys, "train", "--config", tmp_path / "folder")
    assert "is a loop of symbolic links" in fails(capsys, "tune", "--space", tmp_path / "loop")
    assert "which does not exist" in fails(capsys, "train", "--config", tmp_path / "dangling.yaml")


@pytest.mark.parametrize("command, override, fragment", [
    (("train", "--config", "best-cpu"), "train.lr==3", "override train.lr==3: train.lr must be a number, got '=3'"),
    (("train", "--config", "best-cpu"), "train.lrr=3", "override train.lrr=3: unknown key 'lrr' in train"),
    (("tune", "--space", "unet"), "train.lr={loguniform: [1.0e-2, 1.0e-4]}",
     "train.lr in override train.lr={loguniform: [1.0e-2, 1.0e-4]}: empty range"),
], ids=["value", "key", "range"])
def test_an_override_error_names_the_override(tmp_path, capsys, command, override, fragment):
    line = fails(capsys, *command, override, "--results", tmp_path / "R")

    assert fragment in line
    assert "spaces/" not in line   # not the built-in file, which is fine


# ---- the tune summary, printed to a file --------------------------------------------------------


def test_the_summary_prints_whole_to_a_file(tmp_path, trained, monkeypatch):
    from runner.reports.report import describe, print_summary
    from runner.results import best_checkpoint

    monkeypatch.delenv("COLUMNS", raising=False)
    out = tmp_path / "out.txt"
    with open(out, "w") as file:
        monkeypatch.setattr("sys.stdout", file)
        print_summary(trained / "good")
    monkeypatch.undo()

    text = out.read_text()
    assert describe(best_checkpoint(trained / "good").config) in text   # the hyper-parameters, not cut


def test_the_live_view_ends_its_line_before_the_summary_title(tmp_path):
    # A real process whose stdout and stderr go to one file, as `runner tune > log 2>&1` does.
    script = """
import sys
from runner.search.live import LiveView
view = LiveView(samples=1)
view.setup()
view.on_experiment_end(trials=[])
sys.stderr.flush()
print("the summary's title", flush=True)
"""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    with open(tmp_path / "log", "w") as log:
        done = subprocess.run([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                              timeout=120)

    lines = (tmp_path / "log").read_text().splitlines()
    assert done.returncode == 0, lines
    assert lines[-1] == "the summary's title" and lines[-2].startswith("└"), lines


# ---- the demo's fallback -------------------------------------------------------------------------


@pytest.fixture
def demo_checkout(tmp_path) -> Path:
    """scripts/demo.sh in a checkout whose set-up is already done (setup.sh installs packages,
    a minute online), with this checkout's virtual environment and search spaces."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "demo.sh", checkout / "scripts")
    (checkout / "scripts" / "setup.sh").write_text("# set-up already done\n")
    for linked in (".venv", "search_spaces"):
        (checkout / linked).symlink_to(REPO / linked)
    return checkout


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_demo_passes_its_data_folder_on(tmp_path, demo_checkout, how):
    empty = tmp_path / "fashion"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "RUNNER_DATA_DIR"}
    args = ["--data-dir", "fashion"] if how == "flag" else []
    if how == "environment":
        env["RUNNER_DATA_DIR"] = str(empty)

    done = subprocess.run(["bash", str(demo_checkout / "scripts" / "demo.sh"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)

    # The search is the demo's first step: it looked in the folder given (relative to where the
    # demo was started), found it empty, and the demo stopped there.
    assert done.returncode == 2, done.stderr
    name = "--data-dir" if how == "flag" else "$RUNNER_DATA_DIR"
    assert f"runner: error: {name} {empty} is empty" in done.stderr
    assert "Traceback" not in done.stderr


# ---- separate: the images -------------------------------------------------------------------

ALPHA = "its alpha channel was dropped (the colours under it were used as they are)"


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "models", "rgb", channels=3)  # trained on 32x32, takes any multiple of 4


def _truncated(pixels: np.ndarray):
    def write(path):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return write


def _animated(suffix: str, frames: int = 3, **options):
    def write(path):
        images = [Image.fromarray(random_pixels(24, 24, 3, seed=seed)) for seed in range(frames)]
        images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, **options)
    return write


def _rgba(path):
    Image.fromarray(random_pixels(24, 24, 4)).save(path)


def _transparent_animation(path):
    frames = [Image.fromarray(random_pixels(24, 24, 3, seed=seed)).convert("P") for seed in range(2)]
    frames[0].save(path, save_all=True, append_images=frames[1:], transparency=0, duration=100)


# name: (file name, how to write it, exit status, the one line's start, what the line must say)
INPUTS = {
    "truncated": ("cut.png", _truncated(random_pixels(32, 32, 3)), 1, "separate: error: ", "broken or truncated image (image file is truncated): save or copy it again"),
    "truncated_and_far_from_training": ("cut_big.png", _truncated(random_pixels(300, 400, 3)), 1,
                                        "separate: error: ", "broken or truncated image (image file is truncated): save or copy it again"),
    "over_the_default_max_pixels": ("huge.png", lambda p: p.write_bytes(png_declaring(5000, 5000)), 1,
                                    "separate: error: ", "more than --max-pixels 16,777,216: shrink it or raise --max-pixels"),
    "rgba": ("alpha.png", _rgba, 0, "separate: note: ", ALPHA),
    "animated_gif": ("moving.gif", _animated("gif"), 0, "separate: note: ", "only the first of its 3 frames was used"),
    "animated_webp": ("moving.webp", _animated("webp", lossless=True), 0, "separate: note: ",
                      "only the first of its 3 frames was used"),
    "animated_with_transparency": ("both.gif", _transparent_animation, 0, "separate: note: ",
                                   f"{ALPHA}; only the first of its 2 frames was used"),
}


@pytest.mark.parametrize("kind", INPUTS)
def test_each_bad_or_partial_image_gets_one_line_and_its_exit_status(tmp_path, model, cli, kind):
    name, write, status, start, says = INPUTS[kind]
    path = tmp_path / "in" / name
    path.parent.mkdir()
    write(path)

    result = cli(path, "-o", tmp_path / "out", "--model", model)

    assert result.code == status, result.err
    (line,) = result.err.splitlines()
    assert line.startswith(f"{start}{path}: ") and line.endswith(says), line
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ([] if status else [f"{path.stem}_1.png", f"{path.stem}_2.png"])
    if status == 0:
        with Image.open(path) as source, Image.open(tmp_path / "out" / f"{path.stem}_1.png") as first:
            source.seek(0)
            np.testing.assert_array_equal(np.asarray(first), np.asarray(source.convert("RGB")))  # the first frame


def test_the_api_warns_once_for_what_it_did_not_use(tmp_path, model):
    separator = Separator.load(model)
    animated = tmp_path / "moving.gif"
    _animated("gif")(animated)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        separator.separate(Image.fromarray(random_pixels(24, 24, 4)))
        with Image.open(animated) as image:
            separator.separate(image)
        separator.separate(Image.fromarray(random_pixels(24, 24, 3)))

    assert [(w.category, str(w.message)) for w in caught] == [
        (UnusedWarning, f"the image: {ALPHA}"),
        (UnusedWarning, "the image: only the first of its 3 frames was used"),
    ]
