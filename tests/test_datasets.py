"""runner.data.sources against files in the real formats: synthetic CIFAR-10 batches, IDX files
and image folders written by tests/synthetic_data.py; the same reader tests again on the
shared CIFAR-10 subset and Debian's Fashion-MNIST where those are installed; and downloads
from a real HTTP server on the loopback."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner.data import sources as datasets
from runner.data.sources import DATASETS, Images, download, load_images
from runner.errors import RunnerError
from tests.conftest import FASHION_MNIST, HOW_TO_GET_FASHION_MNIST, SHARED_CIFAR
from tests.synthetic_data import (
    CIFAR10_TRAIN_BATCHES, write_cifar_batch, write_cifar_folder, write_gray_pngs, write_idx_folder,
)

SYNTHETIC_FASHION_IMAGES = 50


@pytest.fixture(params=["synthetic", "shared"])
def cifar_folder(request, cifar_dir) -> Path:
    """Each CIFAR-10 reader test runs on the synthetic batches, and on the shared subset where it is."""
    if request.param == "synthetic":
        return cifar_dir
    if not (SHARED_CIFAR / "data_batch_1").is_file():
        pytest.skip(f"the CIFAR-10 subset CI keeps beside the checkout is not at {SHARED_CIFAR}; "
                    "the same test ran on synthetic batches")
    return SHARED_CIFAR


@pytest.fixture(params=["synthetic", "debian"])
def fashion_mnist(request, tmp_path) -> tuple[Path | None, int]:
    """(--data-dir, test images): the IDX readers on synthetic files, and on Debian's Fashion-MNIST where it is."""
    if request.param == "synthetic":
        folder = tmp_path / "fashion-mnist"
        write_idx_folder(folder, SYNTHETIC_FASHION_IMAGES)
        return folder, SYNTHETIC_FASHION_IMAGES
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST is not at {FASHION_MNIST} ({HOW_TO_GET_FASHION_MNIST}); "
                    "the same test ran on synthetic IDX files")
    return None, 10_000     # found in its system folder, with no --data-dir


def raw_batch(path: Path) -> dict:
    with path.open("rb") as file:
        return pickle.load(file, encoding="bytes")


@pytest.fixture(autouse=True)
def isolated_search(tmp_path_factory, monkeypatch):
    """No test reads the user's $RUNNER_DATA_DIR or writes into their real cache."""
    monkeypatch.delenv("RUNNER_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def grey_values(images: Images) -> set[int]:
    return {int(image[0, 0, 0]) for image in images.pixels}


def folder_splits(root: Path) -> tuple[set[int], set[int]]:
    """The grey values that landed in the train and the test split of a folder."""
    train, test = (load_images("folder", split, root, channels=1) for split in ("train", "test"))
    return grey_values(train), grey_values(test)


# --- arguments --------------------------------------------------------------------------


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(RunnerError) as raised:
        load_images("imagenet", "train")
    assert "imagenet" in str(raised.value)
    assert all(name in str(raised.value) for name in DATASETS)


def test_unknown_split_lists_the_known_ones():
    with pytest.raises(RunnerError, match="train, test"):
        load_images("cifar10", "validation")


@pytest.mark.parametrize("conversion", [{"channels": 2}, {"image_size": 0}])
def test_impossible_conversions_are_refused(conversion):
    with pytest.raises(RunnerError):
        load_images("cifar10", "test", **conversion)


# --- CIFAR-10 -----------------------------------------------------------------------------


@pytest.mark.parametrize("through_parent", [False, True], ids=["batches-folder", "its-parent"])
def test_cifar10_reads_every_batch_with_its_classes(cifar_folder, through_parent):
    data_dir = cifar_folder.parent if through_parent else cifar_folder
    train = load_images("cifar10", "train", data_dir)
    test = load_images("cifar10", "test", data_dir)
    assert train.pixels.dtype == np.uint8 and train.pixels.shape[1:] == (3, 32, 32)
    written = [raw_batch(cifar_folder / name)[b"labels"] for name in CIFAR10_TRAIN_BATCHES]
    assert train.labels.tolist() == [label for labels in written for label in labels]
    assert len(test.pixels) == len(raw_batch(cifar_folder / "test_batch")[b"labels"])
    for split in (train, test):
        assert split.labels.dtype == np.int64 and split.labels.shape == (len(split.pixels),)
    assert len(set(train.labels.tolist())) == 10
    assert train.classes == datasets.CIFAR10_CLASSES


def test_cifar10_rows_become_red_green_blue_planes(cifar_folder):
    raw = raw_batch(cifar_folder / "test_batch")
    images = load_images("cifar10", "test", cifar_folder)
    first = raw[b"data"][0]
    np.testing.assert_array_equal(images.pixels[0, 0].ravel(), first[:1024])
    np.testing.assert_array_equal(images.pixels[0, 2].ravel(), first[2048:])
    assert images.labels[0] == raw[b"labels"][0]


def test_cifar10_gray_matches_pil_luma(cifar_folder):
    rgb = load_images("cifar10", "test", cifar_folder)
    gray = load_images("cifar10", "test", cifar_folder, channels=1)
    assert gray.pixels.shape == (len(rgb.pixels), 1, 32, 32)
    for index in (0, 1, len(rgb.pixels) - 1):
        expected = Image.fromarray(rgb.pixels[index].transpose(1, 2, 0)).convert("L")
        np.testing.assert_array_equal(gray.pixels[index, 0], np.asarray(expected))


def test_cifar10_resize_matches_pil_bilinear(cifar_folder):
    rgb = load_images("cifar10", "test", cifar_folder)
    small = load_images("cifar10", "test", cifar_folder, image_size=16)
    assert small.pixels.shape == (len(rgb.pixels), 3, 16, 16)
    expected = Image.fromarray(rgb.pixels[7].transpose(1, 2, 0)).resize((16, 16), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(small.pixels[7], np.asarray(expected).transpose(2, 0, 1))


def test_changing_returned_arrays_leaves_the_next_load_alone(cifar_folder):
    first = load_images("cifar10", "test", cifar_folder)
    original = first.pixels[0].copy()
    first.pixels[0] = 0
    first.labels[0] = 99
    again = load_images("cifar10", "test", cifar_folder)
    np.testing.assert_array_equal(again.pixels[0], original)
    assert again.labels[0] != 99


def test_data_dir_from_the_environment(cifar_folder, monkeypatch):
    monkeypatch.setenv("RUNNER_DATA_DIR", str(cifar_folder.parent))
    assert load_images("cifar10", "test").pixels.shape[1:] == (3, 32, 32)


def test_truncated_cifar_batch_is_named(cifar_folder, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes((cifar_folder / "test_batch").read_bytes()[:5_000])
    with pytest.raises(RunnerError, match=r"test_batch is corrupt.*delete it"):
        load_images("cifar10", "test", tmp_path)


def test_cifar_batch_with_wrong_row_length_is_named(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-py")
    write_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", np.zeros((2, 3000), np.uint8), [0, 1])
    with pytest.raises(RunnerError, match=r"test_batch is corrupt.*3072"):
        load_images("cifar10", "test", tmp_path)


def test_cifar_batch_cannot_run_code(tmp_path):
    write_cifar_folder(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": print}, protocol=2))
    with pytest.raises(RunnerError, match=r"unexpected object .*print"):
        load_images("cifar10", "test", tmp_path)


def test_cifar_folder_without_meta_uses_the_official_classes(tmp_path):
    write_cifar_folder(tmp_path, per_batch=3, label_names=None)
    train = load_images("cifar10", "train", tmp_path)
    assert train.pixels.shape == (15, 3, 32, 32)
    assert train.classes == datasets.CIFAR10_CLASSES


def test_cifar_meta_names_the_classes(tmp_path):
    names = tuple(f"class {letter}" for letter in "abcdefghij")
    write_cifar_folder(tmp_path, per_batch=2, label_names=names)
    assert load_images("cifar10", "test", tmp_path).classes == names


def test_cifar_meta_without_ten_names_is_named(tmp_path):
    write_cifar_folder(tmp_path, per_batch=2, label_names=("cat", "dog"))
    with pytest.raises(RunnerError, match=r"batches.meta is corrupt.*10 label_names"):
        load_images("cifar10", "test", tmp_path)


# --- MNIST and Fashion-MNIST --------------------------------------------------------------


def test_fashion_mnist_reads_with_its_classes(fashion_mnist):
    data_dir, count = fashion_mnist
    test = load_images("fashion-mnist", "test", data_dir)
    assert test.pixels.shape == (count, 1, 28, 28) and test.pixels.dtype == np.uint8
    assert test.labels.dtype == np.int64 and np.bincount(test.labels).tolist() == [count // 10] * 10
    assert test.classes[0] == "T-shirt/top" and len(test.classes) == 10


def test_fashion_mnist_to_rgb_repeats_the_gray_plane(fashion_mnist):
    data_dir, count = fashion_mnist
    gray = load_images("fashion-mnist", "test", data_dir)
    rgb = load_images("fashion-mnist", "test", data_dir, channels=3)
    assert rgb.pixels.shape == (count, 3, 28, 28)
    for channel in range(3):
        np.testing.assert_array_equal(rgb.pixels[:, channel], gray.pixels[:, 0])


def test_idx_files_read_with_their_header_shape(tmp_path):
    expected = write_idx_folder(tmp_path / "mnist")
    images = load_images("mnist", "train", tmp_path)
    np.testing.assert_array_equal(images.pixels[:, 0], expected)
    assert images.labels.tolist() == [0, 1, 2] and images.classes == datasets.MNIST_CLASSES
    assert load_images("mnist", "train", tmp_path, image_size=14).pixels.shape == (3, 1, 14, 14)


@pytest.mark.parametrize(
    "damage, complaint",
    [
        (lambda raw: gzip.compress(b"\x00\x00\x0d\x03" + raw[4:]), "not an IDX file"),
        (lambda raw: gzip.compress(raw[:-10]), "where its header promises"),
        (lambda raw: gzip.compress(raw)[:-30], "corrupt"),
        (lambda raw: raw, "corrupt"),
    ],
    ids=["bad-magic", "short-data", "truncated-gzip", "not-gzip"],
)
def test_damaged_idx_file_is_named(tmp_path, damage, complaint):
    write_idx_folder(tmp_path)
    images_file = tmp_path / "t10k-images-idx3-ubyte.gz"
    images_file.write_bytes(damage(gzip.decompress(images_file.read_bytes())))
    with pytest.raises(RunnerError, match=complaint) as raised:
        load_images("mnist", "test", tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(raised.value)


# --- where datasets are looked for --------------------------------------------------------


def test_empty_data_dir_is_refused(tmp_path):
    with pytest.raises(RunnerError, match="is empty"):
        load_images("cifar10", "train", tmp_path)


def test_missing_data_dir_is_refused(tmp_path):
    with pytest.raises(RunnerError, match="is not a folder"):
        load_images("mnist", "train", tmp_path / "typo")


def test_nothing_anywhere_and_offline_names_every_place_in_one_line(tmp_path, monkeypatch, closed_port_url):
    unreachable = ((f"{closed_port_url}/train-images-idx3-ubyte.gz", "0" * 32),)
    monkeypatch.setitem(datasets.DOWNLOADS, "mnist", unreachable)
    (tmp_path / "unrelated.txt").write_text("not a dataset")
    with pytest.raises(RunnerError) as raised:
        load_images("mnist", "train", tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert f"--data-dir {tmp_path}" in message and "$RUNNER_DATA_DIR (unset)" in message
    assert str(datasets._cache_dir("mnist")) in message and "download failed" in message
    assert "Pass --data-dir" in message


# --- a folder of images ---------------------------------------------------------------------


def test_folder_images_of_any_size_and_mode_become_squares(tmp_path):
    (tmp_path / "train" / "nested").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    Image.new("RGB", (40, 60), (255, 0, 0)).save(tmp_path / "train" / "a.png")
    Image.new("L", (90, 30), 128).save(tmp_path / "train" / "nested" / "b.JPG")
    Image.new("RGBA", (64, 64), (0, 0, 255, 255)).save(tmp_path / "train" / "c.webp")
    Image.new("RGB", (10, 10)).save(tmp_path / "train" / "d.bmp")
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / "e.jpeg")

    train = load_images("folder", "train", tmp_path)
    assert train.pixels.shape == (4, 3, 64, 64) and train.pixels.dtype == np.uint8
    assert train.labels is None and train.classes is None
    assert train.pixels[0, :, 32, 32].tolist() == [255, 0, 0]
    assert load_images("folder", "train", tmp_path, channels=1, image_size=16).pixels.shape == (4, 1, 16, 16)
    assert load_images("folder", "test", tmp_path).pixels.shape == (1, 3, 64, 64)


def test_folder_crops_the_centre_of_the_shorter_side(tmp_path):
    wide = np.zeros((10, 30), np.uint8)
    wide[:, 10:20] = 255        # only the middle third is white
    write_gray_pngs(tmp_path / "test", 1)
    (tmp_path / "train").mkdir()
    Image.fromarray(wide).save(tmp_path / "train" / "wide.png")
    images = load_images("folder", "train", tmp_path, channels=1, image_size=10)
    assert images.pixels.shape == (1, 1, 10, 10) and images.pixels.min() > 200


def test_folder_hash_split_is_stable_and_never_moves_a_file(tmp_path):
    write_gray_pngs(tmp_path, 40)
    train, test = folder_splits(tmp_path)
    assert train.isdisjoint(test) and len(train | test) == 40
    assert 1 <= len(test) <= 10

    write_gray_pngs(tmp_path, 10, start=40)
    train_after, test_after = folder_splits(tmp_path)
    assert train <= train_after and test <= test_after


def test_unreadable_folder_image_is_named(tmp_path):
    write_gray_pngs(tmp_path / "train", 2)
    write_gray_pngs(tmp_path / "test", 1)
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    with pytest.raises(RunnerError, match="broken.png"):
        load_images("folder", "train", tmp_path)


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(RunnerError, match="no train images"):
        load_images("folder", "train", tmp_path)


def test_folder_needs_a_data_dir():
    with pytest.raises(RunnerError, match="--data-dir"):
        load_images("folder", "train")


# --- downloads from a real server on the loopback -----------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base url): files put in the folder are served over HTTP."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def cifar_archive(folder: Path, work: Path) -> tuple[Path, str]:
    write_cifar_folder(work / "cifar-10-batches-py", per_batch=2)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_with_the_right_md5_lands_in_place(served, tmp_path):
    folder, url = served
    archive, md5 = cifar_archive(folder, tmp_path / "work")
    destination = tmp_path / "downloads" / "cifar.tar.gz"
    assert download(f"{url}/{archive.name}", md5, destination) == destination
    assert destination.read_bytes() == archive.read_bytes()
    assert [path.name for path in destination.parent.iterdir()] == ["cifar.tar.gz"]


def test_download_with_a_wrong_md5_leaves_nothing(served, tmp_path):
    folder, url = served
    archive, _ = cifar_archive(folder, tmp_path / "work")
    destination = tmp_path / "downloads" / "cifar.tar.gz"
    with pytest.raises(RunnerError, match="md5"):
        download(f"{url}/{archive.name}", "0" * 32, destination)
    assert list(destination.parent.iterdir()) == []


def test_download_of_a_missing_file_is_a_runner_error(served, tmp_path):
    _, url = served
    with pytest.raises(RunnerError, match="404"):
        download(f"{url}/absent.gz", "0" * 32, tmp_path / "absent.gz")
    assert not (tmp_path / "absent.gz").exists()


def test_download_from_an_unreachable_host_is_a_runner_error(closed_port_url, tmp_path):
    with pytest.raises(RunnerError, match="cannot download"):
        download(f"{closed_port_url}/cifar.tar.gz", "0" * 32, tmp_path / "cifar.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_cifar10_found_nowhere_is_downloaded_unpacked_and_read(served, tmp_path, monkeypatch):
    folder, url = served
    archive, md5 = cifar_archive(folder, tmp_path / "work")
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", ((f"{url}/{archive.name}", md5),))

    train = load_images("cifar10", "train")
    assert train.pixels.shape == (10, 3, 32, 32)
    cache = datasets._cache_dir("cifar10")
    assert sorted(path.name for path in cache.iterdir()) == ["cifar-10-batches-py"]

    archive.unlink()        # the second load must come from the cache, not the server
    assert load_images("cifar10", "test").pixels.shape == (2, 3, 32, 32)
