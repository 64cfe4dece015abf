"""Cost beside quality: what a model costs, recorded for every trial, reported, and used by
`runner export --best --max-params/--max-macs/--max-latency-ms` to pick what fits.

Three real `runner train` runs of U-Nets of three widths make one experiment (their trial
directories gathered under the names small, mid and big). Their scores are then set so
that the biggest scores best and the middle one worst: a limit that keeps out `big` must
export `small`, not the biggest model that fits.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.cli import build_parser, main
from runner.inference.sidecar import read_sidecar
from runner.models import build_model
from runner.models.config import ModelConfig
from runner.counts import format_count
from runner.models.cost import model_cost
from runner.reports.report import pareto_front, write_report
from runner.training.checkpoint import load_checkpoint, rebuild_model

WIDTHS = {"small": ([4, 8], 16), "mid": ([8, 16], 32), "big": ([16, 32], 64)}
SCORES = {"big": 20.0, "small": 19.0, "mid": 18.0}  # dB; the cheapest is not the worst


def config_yaml(widths: list[int], bottleneck: int) -> str:
    return f"""\
data:
  dataset: cifar10
  val_images: 100
  val_pairs: 100
model:
  family: unet
  widths: {widths}
  bottleneck: {bottleneck}
train:
  lr: 2.0e-3
  batch_size: 32
  epoch_pairs: 64
  threads: 1
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory, cifar_dir) -> Path:
    """results/sizes with trials small, mid and big, each one real training epoch, scored as SCORES."""
    root = tmp_path_factory.mktemp("cost")
    for name, (widths, bottleneck) in WIDTHS.items():
        (root / f"{name}.yaml").write_text(config_yaml(widths, bottleneck))
        assert main(["train", "--config", str(root / f"{name}.yaml"), "--max-epochs", "1", "--name", name,
                     "--results", str(root / "results"), "--data-dir", str(cifar_dir)]) == 0
    sizes = root / "results" / "sizes"
    shutil.copytree(root / "results" / "small", sizes)
    shutil.move(sizes / "trial_0", sizes / "small")
    for name in ("mid", "big"):
        shutil.copytree(root / "results" / name / "trial_0", sizes / name)
    for name, score in SCORES.items():
        for metrics_file in (sizes / name).glob("checkpoint_*/metrics.json"):
            summary = json.loads(metrics_file.read_text())
            summary["metrics"]["val_pit_psnr"] = score
            metrics_file.write_text(json.dumps(summary))
    return root / "results"


def recorded(results: Path, trial: str) -> dict:
    """The metrics.json of a trial's (only) checkpoint."""
    (metrics_file,) = (results / "sizes" / trial).glob("checkpoint_*/metrics.json")
    return json.loads(metrics_file.read_text())["metrics"]


def export(results: Path, out: Path, *flags: str, code: int = 0) -> dict | None:
    assert main(["export", "--best", *flags, "--experiment", "sizes", "--results", str(results), "-o", str(out)]) == code
    if code:
        return None
    (model,) = out.glob("*.onnx")
    return read_sidecar(model)


# --- what a model costs -------------------------------------------------------------


def tiny_unet(**options) -> torch.nn.Module:
    return build_model(ModelConfig(family="unet", widths=[4, 8], bottleneck=16, **options), 3, (32, 32))


def test_the_tiny_unet_costs_what_a_hand_count_says():
    """widths 4-8, bottleneck 16, 3x32x32; every conv block is two 3x3 convolutions with BatchNorm."""
    cost = model_cost(tiny_unet(), (3, 32, 32))

    def conv(c_in, c_out, k=3):
        return c_in * c_out * k * k

    # Multiply-accumulates: each output pixel of a convolution takes c_in * c_out * k * k of them;
    # a 2x2 stride-2 transposed convolution takes c_in * c_out * 4 per input pixel.
    encoder = 32 * 32 * (conv(3, 4) + conv(4, 4)) + 16 * 16 * (conv(4, 8) + conv(8, 8)) + 8 * 8 * (conv(8, 16) + conv(16, 16))
    decoder = (8 * 8 * 16 * 8 * 4 + 16 * 16 * (conv(16, 8) + conv(8, 8))
               + 16 * 16 * 8 * 4 * 4 + 32 * 32 * (conv(8, 4) + conv(4, 4)))
    heads = 2 * 32 * 32 * 4 * 3
    assert cost["macs"] == encoder + 2 * decoder + heads == 2_625_536

    # Parameters: convolution weights (no bias before a BatchNorm), BatchNorm's scale and shift,
    # transposed convolutions and 1x1 heads with their biases.
    encoder = conv(3, 4) + conv(4, 4) + conv(4, 8) + conv(8, 8) + conv(8, 16) + conv(16, 16) + 2 * (4 + 4 + 8 + 8 + 16 + 16)
    decoder = (16 * 8 * 4 + 8 + conv(16, 8) + conv(8, 8) + 2 * (8 + 8)
               + 8 * 4 * 4 + 4 + conv(8, 4) + conv(4, 4) + 2 * (4 + 4))
    heads = 2 * (4 * 3 + 3)
    assert cost["params"] == encoder + 2 * decoder + heads == 10_434


def test_mirror_averaging_doubles_the_macs_and_keeps_the_parameters():
    plain, mirrored = model_cost(tiny_unet(), (3, 32, 32)), model_cost(tiny_unet(tta=True), (3, 32, 32))
    assert mirrored["macs"] == 2 * plain["macs"] and mirrored["params"] == plain["params"]


def test_counting_leaves_the_model_and_the_random_stream_alone():
    model = tiny_unet().train()
    weights = {key: value.clone() for key, value in model.state_dict().items()}
    state = torch.random.get_rng_state()
    model_cost(model, (3, 32, 32))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.training and all(torch.equal(model.state_dict()[key], value) for key, value in weights.items())


def test_train_records_the_cost_with_every_epoch(results):
    trial = results / "small" / "trial_0"
    (checkpoint,) = trial.glob("checkpoint_*")
    state = load_checkpoint(checkpoint)
    expected = model_cost(rebuild_model(state), state.input_shape)
    lines = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert lines and all({key: line[key] for key in expected} == expected for line in lines)
    assert {key: state.metrics[key] for key in expected} == expected
    assert expected["macs"] == 2_625_536


# --- the Pareto front ------------------------------------------------------------------


def test_the_pareto_front_keeps_what_nothing_cheaper_beats():
    points = [  # (cost, quality)
        (10, 20.0),   # 0: cheapest
        (20, 19.0),   # 1: costs more, scores worse than 0
        (30, 22.0),   # 2: better than everything cheaper
        (30, 21.0),   # 3: as costly as 2, worse
        (40, 22.0),   # 4: costs more than 2 for the same score
        (50, 25.0),   # 5: the best
        (10, 20.0),   # 6: the same as 0: the first is kept
    ]
    assert pareto_front(points) == [0, 2, 5]
    assert pareto_front([]) == []


def test_the_report_draws_cost_and_lists_the_pareto_trials(results, cifar_dir):
    report = write_report(results / "sizes", data_dir=str(cifar_dir))

    assert [trial.checkpoint.trial for trial in report.pareto] == ["small", "big"]  # mid: dearer and worse than small
    assert (results / "sizes" / "cost.png") in report.figures and (results / "sizes" / "cost.png").stat().st_size > 0
    markdown = report.markdown.read_text()
    table = markdown.split("### The Pareto trials")[1].split("\n\n")[1]
    assert "| small | unet | 10.4k | 2.63M |" in table and "| big |" in table and "| mid |" not in table


# --- export picks what fits -------------------------------------------------------------


@pytest.mark.parametrize("flag, key", [("--max-macs", "macs"), ("--max-params", "params")])
def test_a_limit_exports_the_best_scoring_trial_within_it(results, tmp_path, flag, key):
    limit = recorded(results, "mid")[key]  # at most: mid itself is within, big is not
    sidecar = export(results, tmp_path, flag, str(limit))

    within = {trial: SCORES[trial] for trial in WIDTHS if recorded(results, trial)[key] <= limit}
    assert set(within) == {"small", "mid"}
    assert sidecar["trial"] == max(within, key=within.get) == "small"
    assert sidecar["cost"][key] <= limit

    # The size estimated from the parameters, against the real file of this tiny model.
    (model,) = tmp_path.glob("*.onnx")
    estimate = sidecar["cost"]["onnx_bytes_estimate"]
    assert estimate == recorded(results, "small")["onnx_bytes_estimate"]
    assert abs(estimate - model.stat().st_size) <= 0.1 * model.stat().st_size


def test_a_tta_export_separates_an_image_and_its_mirror_alike(results, tmp_path):
    """`--tta` turns on model.tta in the exported file: twice the MACs, the same parameters, and
    (the mean over an image and its mirror image) one answer for both, mirrored."""
    from runner.inference import Separator

    plain, tta = export(results, tmp_path / "plain"), export(results, tmp_path / "tta", "--tta")
    assert tta["tta"] and not plain["tta"]
    assert tta["cost"]["macs"] == 2 * plain["cost"]["macs"] and tta["cost"]["params"] == plain["cost"]["params"]

    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    for folder, symmetric in (("tta", True), ("plain", False)):
        (model,) = (tmp_path / folder).glob("*.onnx")
        separator = Separator.load(str(model))
        direct = separator.separate(image)
        mirrored = [output[:, ::-1] for output in separator.separate(image[:, ::-1].copy())]
        gap = min(max(np.abs(direct[0] - mirrored[i]).max(), np.abs(direct[1] - mirrored[1 - i]).max()) for i in (0, 1))
        assert (gap < 1e-4) == symmetric, f"{folder}: {gap}"


def test_limits_that_nothing_meets_are_one_line_and_write_nothing(results, tmp_path, capsys):
    export(results, tmp_path / "out", "--max-macs", "1M", "--max-params", "50k", code=2)

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("runner: error: no trial of sizes fits --max-params 50k --max-macs 1M")
    assert f"the smallest needs {format_count(recorded(results, 'small')['params'])} parameters and 2.63M MACs (small)" in err
    assert not (tmp_path / "out").exists()


def test_a_latency_limit_is_measured_and_recorded_in_the_sidecar(results, tmp_path):
    sidecar = export(results, tmp_path, "--max-latency-ms", "60000")

    assert sidecar["trial"] == "big"
    assert 0 < sidecar["latency_ms"] < 60000 and sidecar["latency_threads"] == os.cpu_count()


def test_a_latency_nothing_meets_is_one_line_and_writes_nothing(results, tmp_path, capsys):
    small_macs = recorded(results, "small")["macs"]  # one trial to time keeps the test short
    export(results, tmp_path / "out", "--max-macs", str(small_macs), "--max-latency-ms", "0.000001", code=2)

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    # A limit that three figures would round is named as given.
    assert f"fits --max-latency-ms 1e-06: the one trial within --max-macs {small_macs} takes" in err and "(small)" in err
    assert not (tmp_path / "out").exists()


def test_limits_with_a_named_trial_are_refused(results, tmp_path, capsys):
    code = main(["export", "--trial", "mid", "--max-macs", "1G", "--experiment", "sizes",
                 "--results", str(results), "-o", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "go with --best" in err
    assert not (tmp_path / "out").exists()


def test_counts_take_k_m_and_g():
    args = build_parser().parse_args(["export", "--max-params", "500k", "--max-macs", "1.5G"])
    assert (args.max_params, args.max_macs) == (500_000, 1_500_000_000)
    assert build_parser().parse_args(["export", "--max-macs", "2500000"]).max_macs == 2_500_000
    for bad in ("2X", "0", "nan"):
        with pytest.raises(SystemExit) as exit:
            build_parser().parse_args(["export", "--max-macs", bad])
        assert exit.value.code == 2
