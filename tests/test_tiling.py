"""Tiled inference (`runner.inference.tiling`): where the tiles go, that blending them puts back
exactly what a pixel-wise model gives, that the command and the API tile alike and never run
the model on more than one tile's pixels, and that the seams cost a real model nothing."""

import numpy as np
import pytest
from PIL import Image

from runner.inference import Separator
from runner.inference.catalog import SHIPPED_DIR
from runner.inference.model import Model
from runner.inference.tiling import TILE, ramp, tile_starts
from runner.scoring import pit_psnr
from tests.conftest import SHARED_CIFAR
from tests.test_separate import cli, expected_sources, make_model, random_pixels, save  # noqa: F401 (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::runner.inference.SizeWarning")  # large on purpose


@pytest.mark.parametrize("length, tile, overlap, multiple", [(1000, 512, 64, 16), (4000, 512, 64, 32), (150, 64, 16, 4)])
def test_tiles_start_on_the_multiple_overlap_and_cover_the_padded_side(length, tile, overlap, multiple):
    starts = tile_starts(length, tile, overlap, multiple)

    padded = -(-length // multiple) * multiple
    assert starts[0] == 0 and starts[-1] + tile == padded
    assert all(start % multiple == 0 for start in starts)
    assert all(0 < after - before <= tile - overlap for before, after in zip(starts, starts[1:]))
    assert tile_starts(tile - 3, tile, overlap, multiple) == [0]  # one tile's worth runs whole


def test_the_ramps_of_two_neighbours_add_up_to_one_across_their_overlap():
    weights = ramp(64, 16)

    assert weights.min() > 0 and weights.max() == 1
    np.testing.assert_allclose(weights[-16:] + weights[:16], 1, rtol=1e-6)


@pytest.mark.parametrize("tile, overlap, height, width", [(64, 16, 150, 201), (32, 8, 37, 100), (16, 0, 40, 44)])
def test_tiles_blend_back_exactly_what_a_pixelwise_model_gives(tmp_path, tile, overlap, height, width):
    separator = Separator.load(make_model(tmp_path, "rgb", channels=3), tile=tile, overlap=overlap)
    pixels = random_pixels(height, width, 3)

    first, second = separator.separate(pixels)
    (small_first, _), (float_first, float_second) = separator.separate_batch([pixels[:9, :7], pixels / 255.0])

    expected_first, expected_second = expected_sources(pixels)
    np.testing.assert_array_equal(first, expected_first)
    np.testing.assert_array_equal(second, expected_second)
    np.testing.assert_array_equal(small_first, pixels[:9, :7])
    np.testing.assert_allclose(float_first, pixels / 255.0, atol=1e-6)
    np.testing.assert_allclose(float_second, np.clip(1.2 - pixels / 255.0, 0, 1), atol=1e-6)


def test_command_and_api_tile_a_large_image_alike_one_tile_a_call(tmp_path, cli, monkeypatch):
    model = make_model(tmp_path / "models", "rgb", channels=3)
    pixels = random_pixels(TILE + 90, TILE + 20, 3)
    image = save(tmp_path / "large.png", Image.fromarray(pixels))
    calls = []
    run = Model.run
    monkeypatch.setattr(Model, "run", lambda self, batch: calls.append(batch.shape) or run(self, batch))

    result = cli(image, "-o", tmp_path / "out", "--model", model)
    api_first, api_second = Separator.load(model).separate(pixels)

    assert result.code == 0, result.err
    assert "separated 1 of 1 images" in result.out
    assert len(calls) == 2 * 4  # a 2x2 grid of tiles, for the command and for the API
    assert all(shape[0] * shape[2] * shape[3] <= TILE * TILE for shape in calls)
    expected_first, expected_second = expected_sources(pixels)
    for name, api, expected in (("large_1.png", api_first, expected_first), ("large_2.png", api_second, expected_second)):
        with Image.open(tmp_path / "out" / name) as written:
            np.testing.assert_array_equal(np.asarray(written), api)
        np.testing.assert_array_equal(api, expected)


def test_a_fixed_size_model_is_never_tiled(tmp_path):
    separator = Separator.load(make_model(tmp_path, "gray", channels=1, fixed_size=(40, 40)), tile=16, overlap=0)
    pixels = random_pixels(40, 40, 1)

    first, _ = separator.separate(pixels)  # a tile of it would fail: the model takes 40x40 only

    np.testing.assert_array_equal(first, pixels)


def test_seams_cost_the_shipped_model_nothing_on_real_images(real_images):
    """Many seams (64-pixel tiles overlapping by 32 on 256x256 mixtures) against one whole-image run."""
    from runner.data.sources import load_images

    if real_images.dataset != "cifar10":
        pytest.skip(f"needs the CIFAR-10 subset CI keeps at {SHARED_CIFAR}, since the shipped model separates "
                    f"CIFAR-10-like RGB images; only {real_images.dataset} is here")
    thumbnails = load_images("cifar10", "test", real_images.data_dir).pixels[:4].transpose(0, 2, 3, 1)
    images = [np.asarray(Image.fromarray(image).resize((256, 256), Image.BICUBIC)) for image in thumbnails]
    mixtures = [((a.astype(np.uint16) + b + 1) // 2).astype(np.uint8) for a, b in ((images[0], images[1]), (images[2], images[3]))]
    shipped = SHIPPED_DIR / "cifar10-unet.onnx"
    whole = Separator.load(shipped, tile=256).separate_batch(mixtures)
    tiled = Separator.load(shipped, tile=64, overlap=32).separate_batch(mixtures)

    truths = [(images[0], images[1]), (images[2], images[3])]
    for (whole_1, whole_2), (tiled_1, tiled_2), (a, b) in zip(whole, tiled, truths):
        scores = [pit_psnr(one / 255, two / 255, a / 255, b / 255) for one, two in ((whole_1, whole_2), (tiled_1, tiled_2))]
        assert scores[1] > scores[0] - 0.1, scores
