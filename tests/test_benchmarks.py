"""The speed and error benchmarks run end to end from a checkout at smoke sizes and write the JSON keys
the README quotes. Their figures are measured by running them, never asserted here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_processes import wait_for
from tests.tiny_spaces import tiny_trial

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(name: str, tmp_path: Path, cifar_dir: Path | None, *flags: str) -> dict:
    """Run one benchmark script by name; cifar_dir None for one that reads only results (no --data-dir)."""
    output = tmp_path / f"{name}.json"
    data = ["--data-dir", str(cifar_dir)] if cifar_dir else []
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *data, "--json", str(output), *flags],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| ---" in result.stdout, "a markdown table on stdout"
    return json.loads(output.read_text())


def assert_positive_ratios(report: dict, *keys: str) -> None:
    for key in keys:
        assert math.isfinite(report[key]) and report[key] > 0, key


def test_inference_compares_separate_with_torch(tmp_path, cifar_dir):
    report = run_benchmark("inference", tmp_path, cifar_dir, "--epochs", "1", "--train-pairs", "256", "--pairs", "32",
                           "--rounds", "1", "--cold-runs", "1", "--files", "8", "--precisions", "int8", "--sections", "speed")
    assert_positive_ratios(report, "ort_vs_torch_batch1", "cold_start_vs_import_torch", "int8_vs_fp32_batch1")
    assert report["pit_psnr"]["onnxruntime fp32"] == pytest.approx(report["pit_psnr"]["torch"], abs=0.01)
    assert "large" not in report and "seams" not in report


def test_inference_measures_a_large_image_and_the_seams(tmp_path, cifar_dir):
    report = run_benchmark("inference", tmp_path, cifar_dir, "--sections", "large,seams", "--large-mp", "0.6",
                           "--seam-pairs", "1", "--seam-sizes", "64,256")  # 1024 takes ~30 s
    large = report["large"]
    assert large["width"] * large["height"] > 512 * 512  # more than one tile
    assert_positive_ratios(large, "s_per_megapixel", "peak_rss_mb")
    runs = {(row["size"], row["tile"], row["overlap"]) for row in report["seams"]}
    assert {(64, "whole", ""), (64, 32, 16), (256, "whole", ""), (256, 64, 32)} <= runs
    assert all(math.isfinite(row["vs_whole_db"]) for row in report["seams"])


def test_train_throughput_compares_fit_with_a_bare_loop(tmp_path, cifar_dir):
    report = run_benchmark("train_throughput", tmp_path, cifar_dir, "--epochs", "3", "--epoch-pairs", "256")
    assert_positive_ratios(report, "project_vs_bare", "project_pairs_per_s", "bare_pairs_per_s")
    assert report["runs"][0]["timed_epochs"] == 2


def test_tune_overhead_runs_all_three_ways(tmp_path, cifar_dir):
    report = run_benchmark("tune_overhead", tmp_path, cifar_dir, "--epochs", "1", "--epoch-pairs", "256")
    assert_positive_ratios(report, "tune_overhead", "tune_vs_sequential")


def test_error_bands_split_the_error_of_a_checkpoint(tmp_path, cifar_dir):
    from runner.training.checkpoint import save_checkpoint
    from runner.training.fit import fit
    from tests.test_train import tiny_config

    states = []
    fit(tiny_config(), lambda metrics, state: states.append(state), data_dir=cifar_dir)
    checkpoint = save_checkpoint(tmp_path / "checkpoint", states[-1])

    report = run_benchmark("error_bands", tmp_path, cifar_dir, "--checkpoint", str(checkpoint), "--test-pairs", "50",
                           "--figure", str(tmp_path / "bands.png"))
    for name in ("model", "average"):   # Parseval: the bands partition the spectrum, so they add up to the MSE
        assert sum(band[name] for band in report["bands"].values()) == pytest.approx(report[name]["mse"], rel=1e-4)
    assert 0 < report["model"]["luminance_share"] < 1
    assert (tmp_path / "bands.png").stat().st_size > 0
    without_figure = run_benchmark("error_bands", tmp_path, cifar_dir, "--checkpoint", str(checkpoint),
                                   "--test-pairs", "50", "--figure", "")
    assert "figure" not in without_figure


def test_budget_curves_read_runs_of_runner_train(tmp_path, cifar_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text("# tiny\n" + tiny_trial(lr="2.0e-3", epoch_pairs=128))
    for name, epochs, width in (("narrow", "2", "4"), ("wide", "3", "8")):
        trained = subprocess.run(
            [sys.executable, "-m", "runner.cli", "train", "--config", str(config), "--max-epochs", epochs,
             "--name", name, "--data-dir", str(cifar_dir), "--results", str(tmp_path / "R"),
             f"model.widths=[{width}, 8]"],
            capture_output=True, text=True, timeout=300,
        )
        assert trained.returncode == 0, trained.stderr[-3000:]

    # One run by name in --results, one by its folder; nothing is trained.
    report = run_benchmark("budget_curves", tmp_path, None, "--results", str(tmp_path / "R"), "narrow",
                           str(tmp_path / "R" / "wide"), "--figure", str(tmp_path / "curves.png"))
    narrow, wide = report["runs"]
    assert (narrow["epochs"], wide["epochs"]) == (2, 3)
    assert (narrow["budget"], wide["budget"]) == ("2 epochs", "3 epochs")
    assert (narrow["widths"], wide["widths"]) == ([4, 8], [8, 8]) and narrow["params"] < wide["params"]
    for run in (narrow, wide):
        results = tmp_path / "R" / run["name"] / "trial_0" / "result.json"
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        assert run["best_val_pit_psnr"] == max(row["val_pit_psnr"] for row in rows)
        assert run["curve"]["best"] == sorted(run["curve"]["best"]), "the best so far never falls"
        assert run["train_minutes"] == pytest.approx(sum(row["train_seconds"] for row in rows) / 60, abs=1e-3)
    assert (tmp_path / "curves.png").stat().st_size > 0


STRATEGIES = ("tune", "random")
SEARCH_SMOKE_SPACE = """\
# runner tune --space smoke.yaml (test-sized)
tune:
  max_epochs: 2
""" + tiny_trial(epoch_pairs=64)


def test_search_efficiency_races_runner_tune_against_a_plain_loop(tmp_path, cifar_dir, processes):
    """Two of the four strategies, one through `runner tune` and Ray, one in the script's own worker:
    the others differ from these only in the overrides and the Optuna sampler they pass."""
    space = tmp_path / "smoke.yaml"
    space.write_text(SEARCH_SMOKE_SPACE)
    output, figure = tmp_path / "search.json", tmp_path / "search.png"
    # The processes fixture's environment: Ray's token stays in tmp_path, and whatever the runs leave is stopped.
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "search_efficiency.py"), "--data-dir", str(cifar_dir), "--json", str(output),
         "--space", str(space), "--budget-minutes", "0.5", "--seeds", "1", "--figure", str(figure),
         "--strategies", ",".join(STRATEGIES), "tune.max_epochs=1"],   # an override, which every strategy must follow
        capture_output=True, text=True, timeout=600, env=processes.env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| ---" in result.stdout, "a markdown table on stdout"
    wait_for(lambda: not processes.running(), 30, "every run's processes, Ray's included, to exit")
    report = json.loads(output.read_text())
    assert set(report["strategies"]) == set(STRATEGIES)
    for strategy in STRATEGIES:
        assert report["strategies"][strategy]["label"] in result.stdout, "a row of the table"
    assert len(report["runs"]) == len(STRATEGIES)
    for run in report["runs"]:
        assert run["trials"] and run["curve"], f"{run['strategy']} reported no epoch within the budget"
        times, bests = (list(column) for column in zip(*run["curve"]))
        assert times == sorted(times) and all(0 <= t <= 30 for t in times)
        assert all(later > earlier for earlier, later in zip(bests, bests[1:])), "best-so-far only rises"
        assert bests[-1] == run["final_best"] == max(event[3] for event in run["events"])
        assert run["exit_code"] in (0, 130) and run["stopped_by"] == "budget"
        assert {event[2] for event in run["events"]} == {1}, f"{run['strategy']} ignored tune.max_epochs=1"
    # One random run: its own final best is the target, reached when its curve got there.
    random_run = next(run for run in report["runs"] if run["strategy"] == "random")
    assert report["target_psnr"] == random_run["final_best"]
    assert report["strategies"]["random"]["time_to_target_mean_s"] == random_run["curve"][-1][0]
    assert figure.stat().st_size > 0


def test_trial_costs_measure_the_start_and_the_checkpoints(tmp_path, cifar_dir):
    report = run_benchmark("trial_costs", tmp_path, cifar_dir, "--startup-trials", "2", "--folder-images", "520",
                           "--checkpoint-trials", "2", "--epochs", "2")
    for source in ("cifar10", "folder"):
        assert len(report["startup"][source]["startup_s"]) == 2 and report["startup"][source]["max_s"] > 0
    checkpoints = report["checkpoints"]
    assert checkpoints["epochs"] == 4 and checkpoints["disk_bytes"] > 0 and 2 <= checkpoints["checkpoints_kept"] <= 4


def test_space_spread_ranks_families_and_measures_seed_noise(tmp_path, cifar_dir):
    space = tmp_path / "two-families.yaml"
    space.write_text("tune: {max_epochs: 2}\n" + tiny_trial().replace("  family: unet\n", "  family: {choice: [unet, ae]}\n"))
    report = run_benchmark("space_spread", tmp_path, cifar_dir, "--space", str(space), "--trials", "3",
                           "--noise-seeds", "2", "--figure", str(tmp_path / "spread.png"))
    assert len(report["trials"]) == 3 and sum(f["trials"] for f in report["families"].values()) == 3
    assert list(report["rank_correlation"]) == ["1"]   # epoch 1 of 2 against the final scores (JSON keys are text)
    assert len(report["seed_noise"]["finals"]) == 3 and report["seed_noise"]["range"] >= 0   # its own seed and 2 others
    assert (tmp_path / "spread.png").stat().st_size > 0
