"""`runner export` picks its checkpoint: `--best` (the default) or `--trial ID`, never both.

One real `runner train` epoch of a tiny U-Net makes the experiment; its trial is copied
under a second name and ranked lower, so the two flags must export different trials.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.cli import main
from runner.inference.sidecar import read_sidecar
from tests.tiny_spaces import tiny_trial


@pytest.fixture(scope="module")
def results(tmp_path_factory, cifar_dir) -> Path:
    """results/tiny with trial_0 (trained) and trial_low (its copy, ranked 1 dB lower)."""
    root = tmp_path_factory.mktemp("export")
    (root / "tiny.yaml").write_text(tiny_trial(lr="2.0e-3", epoch_pairs=64))
    assert main(["train", "--config", str(root / "tiny.yaml"), "--max-epochs", "1", "--name", "tiny",
                 "--results", str(root / "results"), "--data-dir", str(cifar_dir)]) == 0
    experiment = root / "results" / "tiny"
    shutil.copytree(experiment / "trial_0", experiment / "trial_low")
    for metrics_file in (experiment / "trial_low").glob("checkpoint_*/metrics.json"):
        summary = json.loads(metrics_file.read_text())
        summary["metrics"]["val_pit_psnr"] -= 1.0
        metrics_file.write_text(json.dumps(summary))
    return root / "results"


def export(results: Path, out: Path, *flags: str) -> dict:
    assert main(["export", *flags, "--experiment", "tiny", "--results", str(results), "-o", str(out)]) == 0
    (model,) = out.glob("*.onnx")
    return read_sidecar(model)


def test_best_exports_the_best_trial_and_trial_exports_the_one_named(results, tmp_path):
    assert export(results, tmp_path / "best", "--best")["trial"] == "trial_0"
    assert export(results, tmp_path / "default")["trial"] == "trial_0"
    assert export(results, tmp_path / "low", "--trial", "trial_low")["trial"] == "trial_low"


def test_unknown_trial_is_one_line_listing_the_trials(results, tmp_path, capsys):
    code = main(["export", "--trial", "trial_9", "--experiment", "tiny", "--results", str(results), "-o", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("runner: error: ")
    assert "no trial 'trial_9'" in err and "trial_0, trial_low" in err
    assert list(tmp_path.iterdir()) == []


def test_best_and_trial_together_are_refused(results, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["export", "--best", "--trial", "trial_0", "--experiment", "tiny", "--results", str(results)])

    assert exit.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_export_becomes_the_default_only_when_asked_or_when_it_scores_better(results, tmp_path, capsys):
    """Against the real shipped model (cifar10 32x32 RGB, val PIT-PSNR 18.39 dB): a 1-epoch export
    does not displace it, `--set-default` (the printed hint) does, and a better-scoring one does."""
    from runner.inference.catalog import default_model
    from runner.training.checkpoint import load_checkpoint, save_checkpoint

    def export_line(out: Path, *flags: str) -> str:
        capsys.readouterr()
        export(results, out, *flags)
        return capsys.readouterr().out.splitlines()[-1]

    out = tmp_path / "export"
    line = export_line(out, "--trial", "trial_0")
    assert line.startswith("tiny-unet is not separate's default model: its val PIT-PSNR ")
    assert "does not beat cifar10-unet's 18.39 dB on cifar10 32x32 RGB" in line
    assert line.endswith("export it again with --set-default --overwrite")
    assert default_model(out).name == "cifar10-unet"

    line = export_line(out, "--trial", "trial_0", "--set-default", "--overwrite")
    assert line == "tiny-unet is now separate's default model (made the default by `runner export --set-default`)"
    assert default_model(out).name == "tiny-unet"

    better = tmp_path / "results"
    shutil.copytree(results, better)
    for checkpoint in (better / "tiny" / "trial_0").glob("checkpoint_*"):  # as if it had trained for longer
        state = load_checkpoint(checkpoint)
        state.metrics["val_pit_psnr"] += 10
        save_checkpoint(checkpoint, state)
    capsys.readouterr()
    assert main(["export", "--trial", "trial_0", "--experiment", "tiny", "--results", str(better),
                 "-o", str(tmp_path / "better")]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("tiny-unet is now separate's default model (its val PIT-PSNR ")
    assert line.endswith(" dB beat cifar10-unet's 18.39 dB on cifar10 32x32 RGB)")
    assert default_model(tmp_path / "better").name == "tiny-unet"
