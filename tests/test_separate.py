"""The `separate` command and the sidecar it trusts, end to end on tiny hand-built ONNX models.

The models are exact so outputs can be checked pixel for pixel: source_1 is the mixture
itself, source_2 is 1.2 - mixture (so clipping shows). The dynamic one passes the
mixture through SpaceToDepth/DepthToSpace, which fail unless H and W are multiples of 4,
so a missing pad would fail the run rather than pass unnoticed.
"""

import ctypes
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import onnxruntime
from runner.errors import RunnerError
from runner.inference.images import read_image, to_pixels
from runner.inference.model import load_model, prepare_batch
from runner.inference.separate import main
from runner.inference.sidecar import (
    SIDECAR_FORMAT,
    read_sidecar,
    sha256_of,
    sidecar_path,
    verify,
    write_sidecar,
)

RNG_SEED = 1234


# ---- models -------------------------------------------------------------------------


def make_model(folder: Path, name: str, *, channels: int, fixed_size: tuple[int, int] | None = None, multiple: int = 4) -> Path:
    """Write NAME.onnx and its sidecar; fixed_size=(H, W) makes a fixed-size model."""
    dynamic = fixed_size is None
    height, width = ("H", "W") if dynamic else fixed_size
    mixture = helper.make_tensor_value_info("mixture", TensorProto.FLOAT, ["N", channels, height, width])
    outputs = [helper.make_tensor_value_info(name_, TensorProto.FLOAT, ["N", channels, height, width]) for name_ in ("source_1", "source_2")]
    if dynamic:
        nodes = [
            helper.make_node("SpaceToDepth", ["mixture"], ["blocks"], blocksize=multiple),
            helper.make_node("DepthToSpace", ["blocks"], ["passed"], blocksize=multiple, mode="DCR"),
        ]
    else:
        nodes = [helper.make_node("Identity", ["mixture"], ["passed"])]
    nodes += [
        helper.make_node("Identity", ["passed"], ["source_1"]),
        helper.make_node("Sub", ["offset", "passed"], ["source_2"]),
    ]
    offset = helper.make_tensor("offset", TensorProto.FLOAT, [], [1.2])
    graph = helper.make_graph(nodes, name, [mixture], outputs, initializer=[offset])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    onnx.save(model, path)
    write_sidecar(
        path,
        {
            "channels": channels,
            "image_size": list(fixed_size or (32, 32)),
            "size_multiple": multiple if dynamic else 1,
            "dynamic_spatial": dynamic,
            "family": "test",
            "precision": "fp32",
        },
    )
    return path


@pytest.fixture
def no_shipped_model(tmp_path, monkeypatch) -> None:
    """An install without the shipped model: only exports and paths can be chosen."""
    monkeypatch.setattr("runner.inference.catalog.SHIPPED_DIR", tmp_path / "nothing shipped")


@pytest.fixture
def rgb_model(tmp_path) -> Path:
    return make_model(tmp_path / "models", "rgb_dynamic", channels=3)


@pytest.fixture
def gray_fixed_model(tmp_path) -> Path:
    return make_model(tmp_path / "models", "gray_16", channels=1, fixed_size=(16, 16))


def expected_sources(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the test models give for uint8 pixels, as uint8."""
    mixture = pixels.astype(np.float32) / np.float32(255)
    second = np.clip(np.float32(1.2) - mixture, 0, 1)
    return pixels, np.rint(second * 255).astype(np.uint8)


# ---- images -------------------------------------------------------------------------


def random_pixels(height: int, width: int, channels: int, seed: int = RNG_SEED) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with valid CRCs but almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# ---- running the command ------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capfd):
    """Run `separate` in-process; capfd also catches what onnxruntime writes to fd 2."""

    def run(*args) -> Result:
        capfd.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit:
            code = exit.code
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return run


def assert_one_error(result: Result, *fragments: str, code: int = 2) -> str:
    """One `separate: error:` line and the exit status: 2 refused or stopped, 1 some inputs failed."""
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("separate: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_no_temporaries(folder: Path) -> None:
    leftovers = [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".separate-probe")]
    assert not leftovers


def assert_separated(image_path: Path, out_dir: Path, mode: str, expected_first: np.ndarray) -> None:
    first, second = (out_dir / f"{image_path.stem}_{k}.png" for k in (1, 2))
    with Image.open(first) as one, Image.open(second) as two:
        assert one.format == two.format == "PNG"
        assert one.mode == two.mode == mode
        with Image.open(image_path) as source:
            assert one.size == two.size == source.size
        _, expected_second = expected_sources(expected_first)
        np.testing.assert_array_equal(np.asarray(one), expected_first)
        np.testing.assert_array_equal(np.asarray(two), expected_second)


# ---- happy paths ----------------------------------------------------------------------


def test_separates_files_and_folders_in_the_models_channels(tmp_path, rgb_model, cli):
    inputs = tmp_path / "in"
    rgb = save(inputs / "rgb_13x7.png", Image.fromarray(random_pixels(7, 13, 3)))
    folder = inputs / "more"
    gray = save(folder / "gray.png", Image.fromarray(random_pixels(9, 5, 1, seed=2)))
    rgba = save(folder / "rgba.png", Image.fromarray(random_pixels(6, 6, 4, seed=3)))
    palette = save(folder / "palette.gif", Image.fromarray(random_pixels(11, 3, 3, seed=4)).convert("P"))
    photo = save(folder / "photo.jpg", Image.fromarray(random_pixels(8, 8, 3, seed=5)), quality=90)
    wide = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    sixteen_bit = save(folder / "sixteen.png", Image.fromarray(wide))
    (folder / "notes.txt").write_text("not an image, and not picked from a folder")
    out = tmp_path / "out"

    result = cli(rgb, folder, "-o", out, "--model", rgb_model, "--batch-size", "2")

    assert result.code == 0, result.err
    note, warning = result.err.splitlines()  # the model was trained on 32x32: these tiny inputs draw one line
    assert note == f"separate: note: {rgba}: its alpha channel was dropped (the colours under it were used as they are)"
    assert warning.startswith("separate: warning: rgb_13x7.png (one of 6 such inputs) is 13x7, far from the 32x32 images")
    for image in (rgb, gray, rgba, palette, photo):
        with Image.open(image) as source:
            assert_separated(image, out, "RGB", np.asarray(source.convert("RGB")))
    wide_as_8_bit = np.rint(wide / 65535 * 255).astype(np.uint8)
    assert_separated(sixteen_bit, out, "RGB", np.repeat(wide_as_8_bit[..., None], 3, axis=2))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_{k}.png" for stem in ("rgb_13x7", "gray", "rgba", "palette", "photo", "sixteen") for k in (1, 2)
    )
    assert "separated 6 of 6 images" in result.out


def test_gray_model_takes_rgb_input_at_its_fixed_size(tmp_path, gray_fixed_model, cli):
    image = save(tmp_path / "color.png", Image.fromarray(random_pixels(16, 16, 3)))

    result = cli(image, "-o", tmp_path / "out", "--model", gray_fixed_model)

    assert result.code == 0, result.err
    with Image.open(image) as source:
        assert_separated(image, tmp_path / "out", "L", np.asarray(source.convert("L")))


def test_without_a_shipped_model_the_first_export_is_the_default(tmp_path, cli, no_shipped_model):
    from runner.inference.catalog import offer_default

    models = tmp_path / "export"
    gray = make_model(models, "gray", channels=1, fixed_size=(16, 16))
    rgb = make_model(models, "rgb", channels=3)
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(16, 16, 3)))

    assert_one_error(cli(image, "-o", tmp_path / "a", "--models-dir", models), "no default model", "--model NAME")

    assert offer_default(gray) == "gray is now separate's default model (the first model here, with none shipped)"
    assert offer_default(rgb).startswith("rgb is not separate's default model: it was trained on ? 32x32 RGB and gray")
    result = cli(image, "-o", tmp_path / "out", "--models-dir", models)

    assert result.code == 0, result.err
    assert result.out.startswith(f"model: gray, {gray} (default: the first model here, with none shipped)\n")
    with Image.open(tmp_path / "out" / "x_1.png") as first:
        assert first.mode == "L"


def test_model_api_pads_to_the_multiple_and_crops_back(tmp_path, rgb_model):
    model = load_model(rgb_model, threads=1)
    small = save(tmp_path / "a.png", Image.fromarray(random_pixels(5, 7, 3)))
    tall = save(tmp_path / "b.png", Image.fromarray(random_pixels(9, 2, 1)))
    images = [read_image(path, model, max_pixels=10_000)[0] for path in (small, tall)]

    batch = prepare_batch(images, model)
    source_1, source_2 = model.run(batch)

    assert (model.channels, model.mode, model.dynamic_spatial) == (3, "RGB", True)
    assert batch.shape == source_1.shape == source_2.shape == (2, 3, 12, 8)
    assert batch.dtype == np.float32 and 0 <= batch.min() and batch.max() <= 1
    np.testing.assert_array_equal(batch[0, :, 5:, :7], np.repeat(batch[0, :, 4:5, :7], 7, axis=1))  # edge padding
    pixels = to_pixels(source_1[0, :, :5, :7])  # the output cropped back to the image
    assert pixels.shape == (3, 5, 7) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels.transpose(1, 2, 0), np.asarray(Image.open(small)))


# ---- the model and its sidecar --------------------------------------------------------


def test_no_model_in_the_models_dir_says_how_to_get_one(tmp_path, cli, no_shipped_model):
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(8, 8, 3)))

    result = cli(image, "-o", tmp_path / "out", "--models-dir", tmp_path / "empty")

    assert_one_error(result, "runner export --best", "--model")


def test_tampered_model_is_refused_before_onnxruntime_reads_it(tmp_path, rgb_model, cli, monkeypatch):
    data = bytearray(rgb_model.read_bytes())
    data[len(data) // 2] ^= 0x01
    rgb_model.write_bytes(bytes(data))
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: pytest.fail("session created"))
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(8, 8, 3)))

    result = cli(image, "-o", tmp_path / "out", "--model", rgb_model)

    assert_one_error(result, "refusing to load", "sha256 does not match rgb_dynamic.json", "re-export")
    assert not (tmp_path / "out" / "x_1.png").exists()


def test_model_without_its_sidecar_is_refused(tmp_path, rgb_model, cli):
    sidecar_path(rgb_model).unlink()
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(8, 8, 3)))

    result = cli(image, "-o", tmp_path / "out", "--model", rgb_model)

    assert_one_error(result, "rgb_dynamic.json is missing", "runner export")


def test_corrupt_onnx_with_a_matching_sidecar_is_one_clear_line(tmp_path, cli):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    write_sidecar(broken, {"channels": 3, "image_size": [8, 8], "size_multiple": 1, "dynamic_spatial": True})
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(8, 8, 3)))

    result = cli(image, "-o", tmp_path / "out", "--model", broken)

    assert_one_error(result, "onnxruntime cannot load", "broken.onnx")
    assert_no_temporaries(tmp_path)


def test_missing_model_file_is_one_clear_line(tmp_path, cli):
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(8, 8, 3)))

    result = cli(image, "-o", tmp_path / "out", "--model", tmp_path / "nope.onnx")

    assert_one_error(result, "nope.onnx does not exist", "--model")


def test_sidecar_records_format_file_and_checksum(tmp_path, rgb_model):
    written = json.loads(sidecar_path(rgb_model).read_text())

    assert written["format"] == SIDECAR_FORMAT
    assert written["onnx_file"] == "rgb_dynamic.onnx"
    assert written["sha256"] == sha256_of(rgb_model)
    assert read_sidecar(rgb_model) == written
    verify(rgb_model, written)
    assert_no_temporaries(tmp_path)


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"channels": 3, "image_size": [8, 8]}', "missing size_multiple, dynamic_spatial"),
        ('{"channels": 2, "image_size": [8, 8], "size_multiple": 1, "dynamic_spatial": true}', "channels must be 1 or 3"),
        ('{"channels": 3, "image_size": [8], "size_multiple": 1, "dynamic_spatial": true}', "image_size must be"),
        ('{"format": 99, "channels": 3, "image_size": [8, 8], "size_multiple": 1, "dynamic_spatial": true}', "upgrade"),
    ],
)
def test_bad_sidecars_are_refused_with_the_reason(tmp_path, text, complaint):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    sidecar_path(model).write_text(text)

    with pytest.raises(RunnerError, match=complaint):
        read_sidecar(model)


def test_writing_a_sidecar_without_required_keys_is_a_bug(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")

    with pytest.raises(ValueError, match="dynamic_spatial"):
        write_sidecar(model, {"channels": 3, "image_size": [8, 8], "size_multiple": 1})
    assert not sidecar_path(model).exists()


# ---- bad inputs: reported one line each, the others still separated ------------------


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(random_pixels(32, 32, 3)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


BAD_INPUTS = {
    "not_an_image": (lambda p: p.write_text("hello, I am text"), "not an image", ()),
    "truncated": (_truncated_png, "truncated", ()),
    "empty": (lambda p: p.write_bytes(b""), "empty", ()),
    "over_max_pixels": (lambda p: Image.fromarray(random_pixels(20, 20, 3)).save(p), "more than --max-pixels 300", ("--max-pixels", "300")),
    "huge_header": (lambda p: p.write_bytes(png_declaring(5000, 5000)), "5000x5000 is 25,000,000 pixels", ()),
    "bomb_header": (lambda p: p.write_bytes(png_declaring(100_000, 100_000)), "too large", ("--max-pixels", str(10**12))),
    "zero_width": (lambda p: p.write_bytes(png_declaring(0, 5)), "", ()),
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_one_line_and_the_others_still_run(tmp_path, rgb_model, cli, kind):
    make, complaint, flags = BAD_INPUTS[kind]
    bad = tmp_path / "in" / f"{kind}.png"
    bad.parent.mkdir()
    make(bad)
    good = save(tmp_path / "in" / "good.png", Image.fromarray(random_pixels(16, 16, 3)))  # within 2x of the model's 32x32
    out = tmp_path / "out"

    result = cli(bad, good, "-o", out, "--model", rgb_model, *flags)

    line = assert_one_error(result, str(bad), complaint, code=1)
    assert str(good) not in line
    assert sorted(p.name for p in out.iterdir()) == ["good_1.png", "good_2.png"]
    assert_no_temporaries(tmp_path)


def test_fixed_size_model_says_which_size_it_needs(tmp_path, gray_fixed_model, cli):
    wrong = save(tmp_path / "wrong.png", Image.fromarray(random_pixels(12, 20, 1)))
    right = save(tmp_path / "right.png", Image.fromarray(random_pixels(16, 16, 1)))

    result = cli(wrong, right, "-o", tmp_path / "out", "--model", gray_fixed_model)

    assert_one_error(result, "wrong.png", "needs 16x16 images, got 20x12", "resize it first", code=1)
    assert (tmp_path / "out" / "right_2.png").exists()
    assert not (tmp_path / "out" / "wrong_1.png").exists()


# ---- refusals before any work ------------------------------------------------------


@pytest.fixture
def one_image(tmp_path) -> Path:
    return save(tmp_path / "in" / "a.png", Image.fromarray(random_pixels(24, 24, 3)))  # near the models' 32x32


def test_output_dir_that_is_a_file_is_refused(tmp_path, rgb_model, one_image, cli):
    out = tmp_path / "out"
    out.write_text("i am a file")

    assert_one_error(cli(one_image, "-o", out, "--model", rgb_model), "is a file", "-o")


def test_output_dir_under_a_file_is_refused(tmp_path, rgb_model, one_image, cli):
    (tmp_path / "file").write_text("i am a file")

    assert_one_error(cli(one_image, "-o", tmp_path / "file" / "out", "--model", rgb_model), "cannot write to", "-o")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a folder even root cannot write to")
def test_output_dir_nobody_can_write_is_refused(rgb_model, one_image, cli):
    assert_one_error(cli(one_image, "-o", "/proc/self", "--model", rgb_model), "cannot write to /proc/self")


# linux/prctl.h and linux/capability.h: root writes to read-only folders only through this capability.
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1


def obey_folder_modes() -> None:
    """Run in the child before exec: without CAP_DAC_OVERRIDE even root is refused a read-only folder."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE) failed")


@pytest.mark.skipif(sys.platform != "linux", reason="drops a Linux capability so that root is refused too")
def test_read_only_output_dir_is_refused(tmp_path, rgb_model, one_image):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    as_root = os.geteuid() == 0
    try:
        done = subprocess.run([str(Path(sys.executable).parent / "separate"), str(one_image), "-o", str(out),
                               "--model", str(rgb_model)], capture_output=True, text=True, timeout=120,
                              preexec_fn=obey_folder_modes if as_root else None)
    finally:
        out.chmod(0o700)
    assert_one_error(Result(done.returncode, done.stdout, done.stderr), "cannot write to", "Permission denied")
    assert list(out.iterdir()) == []


def test_existing_outputs_are_kept_without_overwrite(tmp_path, rgb_model, one_image, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_2.png").write_bytes(b"precious")

    result = cli(one_image, "-o", out, "--model", rgb_model)

    assert_one_error(result, "a_2.png already exists", "--overwrite")
    assert (out / "a_2.png").read_bytes() == b"precious"
    assert not (out / "a_1.png").exists()

    result = cli(one_image, "-o", out, "--model", rgb_model, "--overwrite")

    assert result.code == 0, result.err
    with Image.open(one_image) as source:
        assert_separated(one_image, out, "RGB", np.asarray(source))


def test_two_inputs_with_one_stem_are_refused(tmp_path, rgb_model, cli):
    first = save(tmp_path / "a" / "x.png", Image.fromarray(random_pixels(8, 8, 3)))
    second = save(tmp_path / "b" / "x.jpg", Image.fromarray(random_pixels(8, 8, 3)))

    result = cli(first, second, "-o", tmp_path / "out", "--model", rgb_model)

    assert_one_error(result, str(first), str(second), "x_1.png")
    assert not (tmp_path / "out").exists()


def test_missing_input_and_empty_folder_are_refused(tmp_path, rgb_model, one_image, cli):
    assert_one_error(cli(one_image, tmp_path / "nope.png", "-o", tmp_path / "out", "--model", rgb_model), "nope.png does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_error(cli(tmp_path / "empty", "-o", tmp_path / "out", "--model", rgb_model), "holds no images")


# ---- interrupted and failed writes ------------------------------------------------


def test_failed_write_is_one_line_and_leaves_no_temporary(tmp_path, rgb_model, one_image, cli, monkeypatch):
    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)

    result = cli(one_image, "-o", tmp_path / "out", "--model", rgb_model)

    assert_one_error(result, "cannot write", "No space left on device")
    assert list((tmp_path / "out").iterdir()) == []


def test_interrupted_write_leaves_no_half_written_png(tmp_path, rgb_model, one_image, cli, monkeypatch):
    def interrupted_save(self, file, *args, **kwargs):
        file.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)

    result = cli(one_image, "-o", tmp_path / "out", "--model", rgb_model)

    assert_one_error(result, "interrupted", code=130)
    assert list((tmp_path / "out").iterdir()) == []


# ---- the install without training packages ---------------------------------------------

def test_separate_runs_where_training_packages_cannot_be_imported(tmp_path, rgb_model, training_packages_blocked):
    env = training_packages_blocked
    image = save(tmp_path / "x.png", Image.fromarray(random_pixels(24, 24, 3)))  # near the 32x32 of training: no warning
    script = Path(sys.executable).parent / "separate"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "runner.inference.separate"]

    blocked = subprocess.run([sys.executable, "-c", "import onnx"], env=env, capture_output=True, text=True)
    result = subprocess.run([*command, str(image), "-o", str(tmp_path / "out"), "--model", str(rgb_model)], env=env, capture_output=True, text=True, timeout=120)

    assert "onnx is blocked" in blocked.stderr  # the blocker works, so the run below proves something
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (tmp_path / "out" / "x_1.png").exists() and (tmp_path / "out" / "x_2.png").exists()


def test_importing_separate_pulls_in_nothing_heavy():
    check = "import sys, runner.inference.separate; print(sorted({'torch', 'ray', 'optuna', 'onnx', 'rich'} & set(sys.modules)))"

    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)

    assert result.stdout.strip() == "[]", result.stderr


def test_progress_bar_on_a_terminal_keeps_error_lines_whole(tmp_path, rgb_model, cli, monkeypatch):
    folder = tmp_path / "in"
    for index in range(6):
        save(folder / f"g{index}.png", Image.fromarray(random_pixels(6, 6, 3, seed=index)))
    (folder / "bad.png").write_text("not an image " * 20)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "40")

    result = cli(folder, "-o", tmp_path / "out", "--model", rgb_model)

    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "separate: error:" in line]
    assert len(errors) == 1 and errors[0].rstrip().endswith("not an image Pillow can read")
    assert len(list((tmp_path / "out").glob("g*_[12].png"))) == 12
