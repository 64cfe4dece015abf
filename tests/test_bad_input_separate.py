"""Every image-side input of issue 22's "Why" list through `separate`: each gets exactly one
line on stderr and the exit status the README documents (0 separated, 1 some inputs failed).

- a truncated image, even one far from the training size: its error alone, not the size
  warning and then the error;
- an image over the default --max-pixels (a 25 MP header): one line, refused before decoding;
- RGBA and animated (GIF, WebP) inputs: one note each saying what was used, and outputs.
The large images that used to need 10 GB are `benchmarks/inference.py --sections large`'s.
"""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from runner.inference import Separator, UnusedWarning
from tests.test_separate import assert_one_error, cli, make_model, png_declaring, random_pixels  # noqa: F401 (fixtures)

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
