"""Hostile image files through `separate`: every input ends as two valid PNGs or one error line.

A few hundred seeded files (random bytes, truncations, bit flips of valid PNG, JPEG, BMP,
GIF, TIFF and WebP files, headers patched to declare huge sizes) run through `main`
in-process, in groups so batching sees them mixed. No run may raise anything but
SystemExit, print a traceback, or leave a temporary file behind.
"""

import io
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from runner.inference.separate import main
from tests.test_separate import make_model

SEED = 20240611
FILES_PER_RUN = 40
MAX_PIXELS = 1 << 20  # keeps a flipped size field from making a slow, if legitimate, image


def valid_images(rng: random.Random) -> list[tuple[str, bytes]]:
    """(suffix, bytes) of small valid images in every format and several modes."""
    formats = [("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("gif", "GIF"), ("tif", "TIFF")]
    if features.check("webp"):
        formats.append(("webp", "WEBP"))
    images = []
    for index in range(24):
        suffix, format_ = formats[index % len(formats)]
        width, height = rng.randint(1, 40), rng.randint(1, 40)
        pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(rng.choice(["RGB", "L", "P"] if format_ != "JPEG" else ["RGB", "L"]))
        buffer = io.BytesIO()
        image.save(buffer, format=format_)
        images.append((suffix, buffer.getvalue()))
    wide = np.random.default_rng(99).integers(0, 65536, (7, 9), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    images.append(("png", buffer.getvalue()))
    return images


def truncated(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def bit_flipped(rng: random.Random, data: bytes) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        position = rng.randrange(min(len(mutated), 64)) if rng.random() < 0.5 else rng.randrange(len(mutated))
        mutated[position] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def huge_declared(rng: random.Random, suffix: str, data: bytes) -> bytes | None:
    """The file with its header claiming a huge width or height, or None for formats not patched."""
    mutated = bytearray(data)
    big = rng.choice([65535, 100_000, 2**31 - 1, 2**32 - 1, 1 << 20])
    if suffix == "png":
        struct.pack_into(">II", mutated, 16, big, rng.choice([1, big]))
        if rng.random() < 0.7:  # a correct CRC, so Pillow reads the header as valid
            struct.pack_into(">I", mutated, 29, zlib.crc32(bytes(mutated[12:29])))
    elif suffix == "bmp":
        struct.pack_into("<ii", mutated, 18, min(big, 2**31 - 1), rng.choice([1, -min(big, 2**31 - 1)]))
    elif suffix == "gif":
        struct.pack_into("<HH", mutated, 6, min(big, 65535), min(big, 65535))
        descriptor = mutated.find(b"\x2c", 13)
        if descriptor > 0 and rng.random() < 0.5:
            struct.pack_into("<HH", mutated, descriptor + 5, min(big, 65535), min(big, 65535))
    elif suffix == "jpg":
        frame = mutated.find(b"\xff\xc0")
        if frame < 0:
            return None
        struct.pack_into(">HH", mutated, frame + 5, min(big, 65535), min(big, 65535))
    else:
        return None
    return bytes(mutated)


def hostile_files(folder: Path) -> list[Path]:
    rng = random.Random(SEED)
    originals = valid_images(rng)
    contents: list[tuple[str, bytes]] = list(originals)
    for _ in range(40):
        contents.append((rng.choice(["png", "jpg", "gif", "bin"]), rng.randbytes(rng.randint(0, 300))))
    for suffix, data in originals:
        contents += [(suffix, truncated(rng, data)) for _ in range(3)]
        contents += [(suffix, bit_flipped(rng, data)) for _ in range(12)]
        for _ in range(2):
            patched = huge_declared(rng, suffix, data)
            if patched is not None:
                contents.append((suffix, patched))
        magic_only = data[: rng.randint(1, 16)] + rng.randbytes(rng.randint(0, 64))
        contents.append((suffix, magic_only))
    paths = []
    for index, (suffix, data) in enumerate(contents):
        path = folder / f"case{index:03d}.{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def declared_size(path: Path) -> tuple[int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's complaints about a mutated file are not the check here
        with Image.open(path) as image:
            return image.size


def check_run(paths: list[Path], out: Path, code, err: str) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    far = [line for line in lines if line.startswith("separate: warning: ")]
    assert len(far) <= 1  # one line for all the inputs far from the model's training size
    notes = [line.removeprefix("separate: note: ").split(":", 1)[0] for line in lines if line.startswith("separate: note: ")]
    assert len(notes) == len(set(notes))  # at most one note an input (alpha dropped, first frame used)
    lines = [line for line in lines if line not in far and not line.startswith("separate: note: ")]
    errors = {}
    for line in lines:
        assert line.startswith("separate: error: "), line
        name = line.removeprefix("separate: error: ").split(":", 1)[0]
        assert name not in errors, f"two lines about {name}"
        errors[name] = line
    assert len(lines) == len(errors)
    for path in paths:
        first, second = out / f"{path.stem}_1.png", out / f"{path.stem}_2.png"
        if str(path) in errors:
            assert not first.exists() and not second.exists(), errors[str(path)]
            continue
        assert first.exists() and second.exists(), f"{path.name}: no outputs and no error line"
        with Image.open(first) as one, Image.open(second) as two:
            one.load()
            two.load()
            assert one.format == two.format == "PNG" and one.mode == two.mode == "RGB"
            assert one.size == two.size == declared_size(path)
    assert set(errors) <= {str(path) for path in paths}
    assert not set(errors) & set(notes)  # a noted input was separated
    assert code == (1 if errors else 0)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.filterwarnings("error")  # a warning that escaped would print on stderr in real use
def test_hostile_images_end_in_two_pngs_or_one_error_line(tmp_path, capfd):
    model = make_model(tmp_path / "models", "rgb", channels=3)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    paths = hostile_files(inputs)
    assert len(paths) > 400
    failed = 0
    for start in range(0, len(paths), FILES_PER_RUN):
        group = paths[start : start + FILES_PER_RUN]
        out = tmp_path / f"out{start:03d}"
        capfd.readouterr()
        try:
            code = main([*map(str, group), "-o", str(out), "--model", str(model), "--max-pixels", str(MAX_PIXELS), "--batch-size", "4"])
        except SystemExit as exit:
            code = exit.code
        _, err = capfd.readouterr()
        check_run(group, out, code, err)
        failed += len(err.splitlines())
    assert 0 < failed < len(paths)  # both outcomes were exercised
