"""The Python API (`Separator`), the choice of model (shipped, exported, named, by path),
`separate --list-models` and the warning for inputs far from the training size, on the
exact hand-built models of test_separate (source_1 = mixture, source_2 = 1.2 - mixture)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner.inference import BadImage, RunnerError, Separator, SizeWarning
from runner.inference.catalog import DEFAULT_RECORD, offer_default
from runner.inference.sidecar import sidecar_path, write_sidecar
from tests.test_separate import cli, expected_sources, make_model, no_shipped_model, random_pixels, save  # noqa: F401 (fixtures)


@pytest.fixture
def rgb(tmp_path) -> Separator:
    return Separator(*_loaded(make_model(tmp_path / "models", "rgb", channels=3)))


def _loaded(path):
    from runner.inference.catalog import choose
    from runner.inference.model import load_model

    return load_model(path, threads=1), choose(path)


# ---- the API: same kind in, same kind out ------------------------------------------------


def test_pil_image_in_two_pil_images_out(rgb):
    pixels = random_pixels(20, 24, 3)

    first, second = rgb.separate(Image.fromarray(pixels))

    assert isinstance(first, Image.Image) and (first.mode, first.size) == ("RGB", (24, 20))
    want_1, want_2 = expected_sources(pixels)
    np.testing.assert_array_equal(np.asarray(first), want_1)
    np.testing.assert_array_equal(np.asarray(second), want_2)


def test_uint8_and_float_arrays_come_back_as_their_own_kind(rgb):
    pixels = random_pixels(18, 30, 3)
    want_1, want_2 = expected_sources(pixels)

    first, second = rgb.separate(pixels)
    assert (first.dtype, first.shape) == (np.uint8, pixels.shape)
    np.testing.assert_array_equal(second, want_2)

    for kind in (np.float32, np.float64):
        floats = pixels.astype(kind) / 255
        first, second = rgb.separate(floats)
        assert (first.dtype, first.shape) == (kind, pixels.shape)
        np.testing.assert_allclose(first, floats, atol=1e-6)
        np.testing.assert_allclose(second, np.clip(1.2 - floats, 0, 1), atol=1e-6)


def test_gray_arrays_keep_their_layout(tmp_path):
    gray = Separator(*_loaded(make_model(tmp_path / "m", "gray", channels=1)))
    flat, column = random_pixels(20, 20, 1), random_pixels(20, 20, 1)[..., np.newaxis]

    assert gray.separate(flat)[0].shape == (20, 20)
    assert gray.separate(column)[1].shape == (20, 20, 1)


def test_batch_of_mixed_sizes_matches_one_at_a_time(rgb):
    images = [random_pixels(20, 20, 3, seed=1), random_pixels(17, 33, 3, seed=2), random_pixels(20, 20, 3, seed=3)]

    pairs = rgb.separate_batch(images, batch_size=2)

    assert len(pairs) == 3
    for image, (first, second) in zip(images, pairs):
        single_1, single_2 = rgb.separate(image)
        np.testing.assert_array_equal(first, single_1)
        np.testing.assert_array_equal(second, single_2)


@pytest.mark.parametrize(
    "image, complaint",
    [
        (np.zeros((20, 20), np.uint8), "shape H x W x 3, got shape (20, 20)"),
        (np.zeros((20, 20, 4), np.uint8), "got shape (20, 20, 4)"),
        (np.zeros((20, 20, 3), np.int16), "uint8 (0-255) or float (0-1), got int16"),
        (np.full((20, 20, 3), 3.0, np.float32), "values from 3 to 3: divide 0-255 values by 255"),
        (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
        ("avg.png", "a PIL image or a numpy array, got str"),
    ],
)
def test_bad_input_raises_the_commands_one_line(rgb, image, complaint):
    with pytest.raises(BadImage) as raised:
        rgb.separate(image)
    assert complaint in str(raised.value) and "\n" not in str(raised.value)
    assert isinstance(raised.value, RunnerError)  # one except clause catches every mistake


def test_fixed_size_model_refuses_other_sizes(tmp_path):
    fixed = Separator(*_loaded(make_model(tmp_path / "m", "fixed", channels=1, fixed_size=(16, 16))))

    with pytest.raises(BadImage, match="needs 16x16 images, got 20x12"):
        fixed.separate(Image.new("L", (20, 12)))


# ---- inputs far from the training size -----------------------------------------------------


def test_far_from_training_size_warns_and_near_does_not(rgb):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb.separate(random_pixels(40, 60, 3))  # under 2x of 32x32 on both sides
        assert caught == []
        rgb.separate(random_pixels(512, 768, 3))

    (warning,) = caught
    assert warning.category is SizeWarning
    assert "768x512" in str(warning.message) and "32x32" in str(warning.message)
    assert "data.dataset: folder" in str(warning.message)


def test_command_warns_once_for_all_far_inputs(tmp_path, cli):
    model = make_model(tmp_path / "models", "rgb", channels=3)
    big = [save(tmp_path / "in" / f"big{n}.png", Image.fromarray(random_pixels(200, 70, 3, seed=n))) for n in range(2)]
    near = save(tmp_path / "in" / "near.png", Image.fromarray(random_pixels(32, 32, 3)))

    result = cli(*big, near, "-o", tmp_path / "out", "--model", model)

    assert result.code == 0
    (line,) = result.err.splitlines()
    assert line == (
        "separate: warning: big0.png (one of 2 such inputs) is 70x200, far from the 32x32 images the model "
        "was trained on, so expect a poor separation; to separate images like these, train on your own "
        "(data.dataset: folder, see the README)"
    )
    assert len(list((tmp_path / "out").iterdir())) == 6  # warned, not refused


# ---- which model: shipped, exported, named, by path ------------------------------------------


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A shipped model (cifar10 32x32 RGB, val PIT-PSNR 18.0 dB) in a stand-in for the package's folder."""
    folder = tmp_path / "package" / "shipped"
    path = make_model(folder, "cifar10-unet", channels=3)
    _record(path, dataset="cifar10", metrics={"val_pit_psnr": 18.0})
    monkeypatch.setattr("runner.inference.catalog.SHIPPED_DIR", folder)
    return path


def _record(path, **facts):
    """Rewrite the sidecar of `path` with `facts` added, as the exporter would have written them."""
    info = json.loads(sidecar_path(path).read_text())
    write_sidecar(path, {**{k: v for k, v in info.items() if k not in ("format", "onnx_file", "sha256")}, **facts})
    return path


def _export(folder, name, score, dataset="cifar10"):
    return _record(make_model(folder, name, channels=3), dataset=dataset, metrics={"val_pit_psnr": score})


def test_shipped_model_runs_when_there_is_no_export(tmp_path, shipped, cli):
    image = save(tmp_path / "avg.png", Image.fromarray(random_pixels(32, 32, 3)))
    export = tmp_path / "export"

    result = cli(image, "-o", tmp_path / "out", "--models-dir", export)

    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        f"model: cifar10-unet, shipped with separation-runner (default: the shipped model, as no export in {export}/ "
        "has been made the default)"
    )
    assert Separator.load(models_dir=export).name == "cifar10-unet"


def test_default_changes_only_when_asked_or_beaten_on_the_same_data(tmp_path, shipped, cli):
    export = tmp_path / "export"
    image = save(tmp_path / "avg.png", Image.fromarray(random_pixels(32, 32, 3)))

    def model_line(out):
        return cli(image, "-o", tmp_path / out, "--models-dir", export).out.splitlines()[0]

    worse = _export(export, "worse-unet", 16.9)  # the newest model, but a worse one
    assert offer_default(worse) == (
        "worse-unet is not separate's default model: its val PIT-PSNR 16.90 dB does not beat cifar10-unet's "
        "18.00 dB on cifar10 32x32 RGB, so cifar10-unet stays the default; run it with `separate --model worse-unet`, "
        "or export it again with --set-default --overwrite"
    )
    other = _export(export, "fashion-unet", 25.0, dataset="fashion-mnist")  # better, on other data
    assert "trained on fashion-mnist 32x32 RGB and cifar10-unet on cifar10 32x32 RGB" in offer_default(other)
    folder = _export(export, "folder-unet", 30.0, dataset="folder")
    assert "a data.dataset: folder, and its sidecar does not say which" in offer_default(folder)
    assert model_line("a").startswith("model: cifar10-unet, shipped with separation-runner (default: the shipped")

    better = _export(export, "better-unet", 18.5)
    assert offer_default(better) == ("better-unet is now separate's default model (its val PIT-PSNR 18.50 dB beat "
                                     "cifar10-unet's 18.00 dB on cifar10 32x32 RGB)")
    assert model_line("b") == (f"model: better-unet, {better} (default: its val PIT-PSNR 18.50 dB beat cifar10-unet's "
                               "18.00 dB on cifar10 32x32 RGB)")
    assert "does not beat better-unet's 18.50 dB" in offer_default(_export(export, "middle-unet", 18.2))

    assert offer_default(worse, set_default=True) == (
        "worse-unet is now separate's default model (made the default by `runner export --set-default`)")
    assert model_line("c") == f"model: worse-unet, {worse} (default: made the default by `runner export --set-default`)"
    assert Separator.load(models_dir=export).name == "worse-unet"
    listed = cli("--list-models", "--models-dir", export).out.splitlines()
    assert [line.split()[1] for line in listed if line.startswith("* ")] == ["worse-unet", "the"]

    worse.unlink()
    assert model_line("d") == (f"model: cifar10-unet, shipped with separation-runner (default: {export / DEFAULT_RECORD} "
                               "names worse-unet, which is gone, so the shipped model runs)")


def test_a_damaged_default_record_is_one_line(tmp_path, shipped, cli):
    export = tmp_path / "export"
    export.mkdir()
    image = save(tmp_path / "avg.png", Image.fromarray(random_pixels(32, 32, 3)))
    for text in ("{not json", '["a list"]'):
        (export / DEFAULT_RECORD).write_text(text)
        result = cli(image, "-o", tmp_path / "out", "--models-dir", export)
        assert result.code == 2
        assert result.err.count("\n") == 1 and str(export / DEFAULT_RECORD) in result.err
        assert "delete it, and the shipped model is the default again" in result.err


def test_model_by_name_or_path_and_unknown_names(tmp_path, shipped, cli):
    export = tmp_path / "export"
    make_model(export, "mine-unet", channels=3)
    image = save(tmp_path / "avg.png", Image.fromarray(random_pixels(32, 32, 3)))

    by_name = cli(image, "-o", tmp_path / "a", "--models-dir", export, "--model", "cifar10-unet").out
    assert by_name.startswith("model: cifar10-unet, shipped with separation-runner (--model)\n")
    by_path = cli(image, "-o", tmp_path / "b", "--model", export / "mine-unet.onnx").out
    assert by_path.startswith(f"model: mine-unet, {export / 'mine-unet.onnx'} (--model)\n")

    unknown = cli(image, "-o", tmp_path / "c", "--models-dir", export, "--model", "nope")
    assert unknown.code == 2
    assert unknown.err.strip() == (
        "separate: error: no model named 'nope' (the models here: cifar10-unet, mine-unet); "
        "`separate --list-models` shows them"
    )
    missing = cli(image, "-o", tmp_path / "d", "--model", tmp_path / "gone.onnx")
    assert missing.code == 2 and "gone.onnx does not exist" in missing.err
    with pytest.raises(RunnerError, match="no model named 'nope'"):
        Separator.load("nope", models_dir=export)


def test_list_models_shows_both_with_their_facts(tmp_path, shipped, cli):
    export = tmp_path / "export"
    mine = _record(make_model(export, "mine-unet", channels=1, fixed_size=(28, 28)),
                   dataset="fashion-mnist", metrics={"val_pit_psnr": 21.234})

    result = cli("--list-models", "--models-dir", export)

    assert result.code == 0, result.err
    header, first, second, footer = result.out.splitlines()
    assert header.split()[:4] == ["name", "trained", "on", "PIT-PSNR"]
    assert first.startswith("* cifar10-unet") and "shipped with separation-runner" in first
    assert second.startswith("  mine-unet") and "fashion-mnist 28x28" in second and "21.23 dB (validation)" in second
    assert f"{os.path.getsize(mine) / 1e6:.1f} MB" in second
    assert footer.startswith("* the default: the shipped model")


def test_nothing_to_list_and_nothing_to_run(tmp_path, no_shipped_model, cli):
    assert "no models" in cli("--list-models", "--models-dir", tmp_path / "empty").out
    assert cli("-o", tmp_path / "out").code == 2  # no images: argparse's usage error


# ---- the README's example ---------------------------------------------------------------------


def test_the_readmes_python_example_runs_as_written(tmp_path):
    """The ```python block of the README's "From Python", run in an empty folder with the shipped model."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### From Python"):]
    code = section[section.index("```python\n") + len("```python\n"): section.index("```\n", section.index("```python"))]

    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    first_line, error_line = result.stdout.splitlines()
    assert first_line.startswith("cifar10-unet default: the shipped model")
    assert error_line.startswith("the model takes RGB arrays of shape H x W x 3, got shape (32, 32, 4)")
    assert (tmp_path / "avg.png").is_file()
