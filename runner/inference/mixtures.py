"""Mixtures as files: write test mixtures with their true sources as PNGs, score separated PNGs.

This is how a user (and the end-to-end checks) measures what `separate` really delivers:
uint8 PNG mixtures in, uint8 PNG outputs back, PIT-PSNR against the true sources beside
the Average baseline (the mixture PNG itself returned twice). numpy and pillow only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from runner.data.sources import load_images
from runner.errors import RunnerError
from runner.scoring import pit_psnr
from runner.data.pairs import TEST_PAIRS_SEED, fixed_pairs


def write_mixtures(dataset: str, split: str, count: int, output: Path, *, data_dir=None) -> int:
    images = load_images(dataset, split, data_dir).pixels
    pairs = fixed_pairs(len(images), count, TEST_PAIRS_SEED)
    mixtures_dir, sources_dir = output / "mixtures", output / "sources"
    for directory in (mixtures_dir, sources_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for number, (a, b) in enumerate(pairs):
        source_a, source_b = images[a], images[b]
        mixture = ((source_a.astype(np.uint16) + source_b + 1) // 2).astype(np.uint8)
        stem = f"{number:05d}"
        _save(mixture, mixtures_dir / f"{stem}.png")
        _save(source_a, sources_dir / f"{stem}_a.png")
        _save(source_b, sources_dir / f"{stem}_b.png")
    return len(pairs)


def score_outputs(pairs_dir: Path, outputs_dir: Path) -> dict[str, float]:
    """Mean PIT-PSNR of `<stem>_1.png`, `<stem>_2.png` in `outputs_dir` and of the Average baseline."""
    mixtures = sorted((pairs_dir / "mixtures").glob("*.png"))
    if not mixtures:
        raise RunnerError(f"no mixtures in {pairs_dir / 'mixtures'}; write them with `runner mixtures -o {pairs_dir}`")
    model_scores, baseline_scores = [], []
    for mixture_file in mixtures:
        stem = mixture_file.stem
        source_a, source_b = (_load(pairs_dir / "sources" / f"{stem}_{k}.png") for k in "ab")
        outputs = [outputs_dir / f"{stem}_{k}.png" for k in "12"]
        missing = [str(path) for path in outputs if not path.is_file()]
        if missing:
            raise RunnerError(f"{missing[0]} is missing; run `separate {pairs_dir / 'mixtures'} -o {outputs_dir}` first")
        output_1, output_2 = (_load(path) for path in outputs)
        mixture = _load(mixture_file)
        model_scores.append(pit_psnr(output_1, output_2, source_a, source_b))
        baseline_scores.append(pit_psnr(mixture, mixture, source_a, source_b))
    model, baseline = float(np.mean(model_scores)), float(np.mean(baseline_scores))
    return {"pairs": len(mixtures), "pit_psnr": model, "baseline_psnr": baseline, "gain_db": model - baseline}


def print_scores(scores: dict[str, float], json_path: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"separated PNGs, {scores['pairs']} pairs")
    for column in ("method", "PIT-PSNR"):
        table.add_column(column)
    table.add_row("model (separate)", f"{scores['pit_psnr']:.2f} dB")
    table.add_row("Average baseline", f"{scores['baseline_psnr']:.2f} dB")
    table.add_row("gain", f"{scores['gain_db']:+.2f} dB")
    Console().print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(scores, indent=2) + "\n")


def _save(pixels: np.ndarray, path: Path) -> None:
    image = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    Image.fromarray(image).save(path)


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float32) / 255.0
