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
        assert path.read_text().startswith(f"# runner train --config search_spaces/{name} ")
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
