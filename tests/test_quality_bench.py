"""benchmarks/quality.py end to end on a smoke budget: every entry is in the table and the JSON, beside the Average baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "quality.py"


def load_benchmark():
    sys.path.insert(0, str(REPO))
    from benchmarks import quality

    return quality


def test_every_entry_reads_a_constants_only_config():
    from runner.space import load_space, resolve_constants

    quality = load_benchmark()
    configs = [entry.config for entry in quality.ENTRIES if entry.config]
    assert len(configs) == len(quality.ENTRIES) - 1     # all but the Average baseline train
    for name in configs:
        path = REPO / "search_spaces" / name
        assert path.read_text().splitlines()[2].startswith(f"# runner train --config {path.stem} ")
        resolve_constants(load_space(path))


def test_smoke_run_reports_every_entry_beside_the_average_baseline(cifar_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--minutes", "0.01", "--threads", "1", "--data-dir", str(cifar_dir),
         "--json", str(tmp_path / "quality.json"), "--figure", str(tmp_path / "separations.png")],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "quality.json").read_text())
    quality = load_benchmark()
    keys = [entry.key for entry in quality.ENTRIES]
    assert report["order"] == keys and set(report["entries"]) == set(keys)
    baseline = report["entries"]["average"]["pit_psnr"]
    assert 10 < baseline < 25
    for key in keys:
        entry = report["entries"][key]
        assert entry["baseline_psnr"] == pytest.approx(baseline)      # the same test pairs for every entry
        assert entry["gain_db"] == pytest.approx(entry["pit_psnr"] - baseline)
        assert 0 < entry["pit_ssim"] <= 1
    table = result.stdout
    for entry in quality.ENTRIES:
        assert entry.label in table
    assert report["best"] in keys and (tmp_path / "separations.png").stat().st_size > 0


def test_missing_dataset_skips_with_a_reason(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(tmp_path / "nowhere"),
                             "--json", str(tmp_path / "q.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "skipped" in result.stderr and "nowhere" in result.stderr
    assert "skipped" in json.loads((tmp_path / "q.json").read_text())


def test_the_best_of_the_run_is_marked_from_the_measured_scores():
    quality = load_benchmark()

    def report(scores: dict[str, float]) -> dict:
        entries = {key: {"label": key.upper(), "config": None, "pit_psnr": psnr, "pit_ssim": 0.5, "gain_db": psnr - 15.0}
                   for key, psnr in scores.items()}
        return {"entries": entries, "best": None, "test_pairs": 2, "minutes_per_entry": 1, "threads": 1,
                "machine": {"processor": "cpu"}, "smoke": False}

    marked = lambda table: [line for line in table.splitlines() if quality.BEST_MARK in line]  # noqa: E731
    assert marked(quality.markdown(report({"average": 15.0, "plain_unet": 17.1, "best_cpu": 16.9}))) == [
        f"| **PLAIN_UNET{quality.BEST_MARK}** | - | 17.10 | 0.500 | +2.10 | - | - |"]
    assert "**AVERAGE" in marked(quality.markdown(report({"average": 15.0, "original": 14.8})))[0]
    for entry in quality.ENTRIES:  # no label claims a rank the run did not measure
        assert "best overall" not in entry.label and quality.BEST_MARK.strip() not in entry.label
