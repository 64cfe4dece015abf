"""Configuration that checks itself: every key of every section, given a value of the wrong
type and one out of range, through `runner train` and `runner tune`, ends in one line and
exit 2 before any data is read or Ray is started. Plus the rules across keys: registries as
the only source of names, keys of other families, what `runner tune` sets itself."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest
import torch
import yaml

from runner.cli import main
from runner.config import FAMILY_ONLY, SECTIONS, TrialConfig, build_section
from runner.data.sampler import AUGMENTS
from runner.data.sources import DATASETS
from runner.errors import RunnerError
from runner.space import load_space, resolve_constants
from runner.training.losses import RECONSTRUCTION, per_image_error
from runner.training.schedules import SCHEDULES

# section -> key -> (a value of the wrong type, a value out of range or None where a type has no range)
WRONG = {
    "data": {
        "dataset": (5, "imagenet"),
        "channels": ("rgb", 2),
        "image_size": ("big", 0),
        "per_class": (True, 0),
        "val_images": (1.5, 0),
        "val_pairs": ("many", -1),
        "augment": (1, "rotate"),
        "shift": ("1", -1),
    },
    "model": {
        "family": (1, "gan"),
        "widths": ("abc", [8, 0]),
        "bottleneck": ("x", 0),
        "block": (1, "dense"),
        "norm": (True, "layer"),
        "output": (0, "mixed"),
        "decoder": (2, "three"),
        "tta": ("yes", None),
        "unshuffle": (2.0, 0),
        "latent_dim": ("x", 0),
    },
    "train": {
        "lr": ("fast", -1),
        "batch_size": (True, 0),
        "epochs": ("ten", -3),
        "epoch_pairs": ("x", 0),
        "loss": (1, "l2"),
        "recon": (1, "ssim"),
        "kl_weight": ("big", -0.1),
        "schedule": (1, "step"),
        "weight_decay": ("x", -0.1),
        "ema": ("x", 2.0),
        "seed": (1.5, -1),
        "minutes": ("x", 0),
        "threads": ("x", 0),
        "compile": ("yes", None),
        "precision": (16, "fp8"),
        "channels_last": (1, None),
        "device": (0, "gpu"),
    },
}
CASES = [
    pytest.param(section, key, value, id=f"{section}.{key}={kind}")
    for section, keys in WRONG.items()
    for key, values in keys.items()
    for kind, value in zip(("wrong-type", "out-of-range"), values)
    if value is not None
]


def test_every_key_of_every_section_has_wrong_values():
    assert {section: set(keys) for section, keys in WRONG.items()} == {
        section: {f.name for f in dataclasses.fields(cls)} for section, cls in SECTIONS.items()
    }


def trial_yaml(section: str = "", key: str = "", value=None) -> dict:
    """A tiny valid trial, of a family that reads `section.key`, with that key set to `value`."""
    family = FAMILY_ONLY.get((section, key), ("unet",))[0]
    trial = {"data": {"val_images": 10, "val_pairs": 10}, "model": {"family": family, "widths": [4], "bottleneck": 8},
             "train": {"batch_size": 4}}
    if key:
        trial[section][key] = value
    return trial


def run(capsys, tmp_path, command: str, trial: dict, *flags: str) -> str:
    """`runner <command>` on `trial` in this process; returns its one error line (exit 2 asserted)."""
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(trial))
    flag = "--config" if command == "train" else "--space"
    code = main([command, flag, str(path), *flags, "--results", str(tmp_path / "R"), "--data-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("runner: error: "), err
    assert not (tmp_path / "R").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    return err


def test_the_tiny_trial_is_valid_for_every_family():
    for family in ("ae", "vae", "unet"):
        trial = trial_yaml()
        trial["model"]["family"] = family
        TrialConfig.from_dict(trial)


@pytest.mark.parametrize("command", ["train", "tune"])
@pytest.mark.parametrize("section, key, value", CASES)
def test_a_wrong_value_is_one_line_naming_key_rule_and_value(capsys, tmp_path, command, section, key, value):
    line = run(capsys, tmp_path, command, trial_yaml(section, key, value))
    assert f"{section}.{key}" in line
    assert repr(value[-1] if isinstance(value, list) else value) in line
    assert "must" in line or "valid values" in line


@pytest.mark.parametrize("command, tune, flags, rule", [
    ("tune", {"grace_period": 2}, ["--max-epochs", "1"],
     "tune.grace_period 2 is more than tune.max_epochs 1: ASHA would stop no trial early; lower tune.grace_period "
     "or raise tune.max_epochs (--max-epochs)"),
    ("tune", {}, ["--samples", "2", "--max-epochs", "3"], None),   # valid: they reach the data check
    ("train", None, ["--device", "cuda:x"], "train.device must be cpu, cuda or cuda:N (N a GPU index), got 'cuda:x'"),
    ("train", None, ["--minutes", "1", "--device", "gpu"], "train.device must be cpu, cuda or cuda:N (N a GPU index), got 'gpu'"),
])
def test_a_flag_is_checked_with_the_yaml_in_one_pass(capsys, tmp_path, command, tune, flags, rule):
    trial = trial_yaml() if tune is None else {**trial_yaml(), "tune": tune}
    line = run(capsys, tmp_path, command, trial, *flags)
    if rule is None:  # no complaint about the flags: the first is the missing data
        assert "tune." not in line and "none" in line
    else:
        assert line.startswith("runner: error: ") and line.rstrip().endswith(rule)


@pytest.mark.parametrize("section, key, value, rule", [
    ("train", "lr", -1, "train.lr must be greater than 0, got -1"),
    ("train", "batch_size", 0, "train.batch_size must be greater than 0, got 0"),
    ("train", "batch_size", True, "train.batch_size must be an integer, got True"),
    ("train", "ema", 1.0, "train.ema must be less than 1, got 1.0"),
    ("train", "lr", float("inf"), "train.lr must be a finite number, got inf"),
    ("model", "widths", [], "model.widths must have at least 1 item, got []"),
    ("model", "widths", [8, 0], "model.widths[1] must be greater than 0, got 0"),
    ("model", "norm", "layer", "model.norm is 'layer'; valid values: batch, group, none"),
    ("data", "channels", 2, "data.channels must be 1 (grey) or 3 (RGB)"),
    ("train", "device", "gpu", "train.device must be cpu, cuda or cuda:N"),
])
def test_the_line_words(section, key, value, rule):
    with pytest.raises(RunnerError) as raised:
        TrialConfig.from_dict(trial_yaml(section, key, value))
    assert rule in str(raised.value)


@pytest.mark.parametrize("section, key, registry", [
    ("data", "dataset", DATASETS), ("data", "augment", AUGMENTS),
    ("train", "recon", RECONSTRUCTION), ("train", "schedule", SCHEDULES),
])
def test_names_are_those_of_the_registry_that_uses_them(section, key, registry):
    for name in registry:
        assert getattr(build_section(section, {key: name}), key) == name
    with pytest.raises(RunnerError, match=f"{section}.{key} is 'nope'; valid values: {', '.join(registry)}"):
        build_section(section, {key: "nope"})


def test_every_reconstruction_loss_dispatches_psnr_included():
    prediction, target = torch.full((2, 1, 4, 4), 0.5), torch.zeros(2, 1, 4, 4)
    assert per_image_error(prediction, target, "psnr").tolist() == pytest.approx([10 * torch.log10(torch.tensor(0.25 + 1e-8)).item()] * 2)
    with pytest.raises(RunnerError, match="unknown reconstruction loss 'ssim'; valid: mse, l1, psnr"):
        per_image_error(prediction, target, "ssim")


def test_numbers_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-3 as text; the runner reads it as the number it is."""
    path = tmp_path / "trial.yaml"
    path.write_text("model: {family: unet}\ntrain: {lr: 1e-3}\n")
    assert resolve_constants(load_space(path)).train.lr == 1e-3
    path.write_text("model: {family: vae}\ntrain: {lr: {loguniform: [1e-4, 1.0e-2]}, kl_weight: 1.0e3}\n")
    space = load_space(path)
    assert space.params["train"]["lr"] == {"loguniform": [1e-4, 1e-2]} and space.params["train"]["kl_weight"] == 1000.0


def test_epochs_null_needs_a_minutes_budget(capsys, tmp_path):
    trial = trial_yaml("train", "epochs", None)
    line = run(capsys, tmp_path, "train", trial)
    assert "train.epochs is null" in line and "train.minutes" in line
    trial["train"]["minutes"] = 0.5
    assert TrialConfig.from_dict(trial).train.epochs is None


@pytest.mark.parametrize("command", ["train", "tune"])
@pytest.mark.parametrize("family, section, key, value", [
    ("unet", "train", "kl_weight", 0.01), ("ae", "train", "kl_weight", 0.01),
    ("unet", "model", "latent_dim", 64), ("vae", "model", "unshuffle", 2),
])
def test_a_key_the_family_never_reads_is_refused(capsys, tmp_path, command, family, section, key, value):
    trial = trial_yaml(section, key, value)
    trial["model"]["family"] = family
    line = run(capsys, tmp_path, command, trial)
    assert f"{section}.{key} applies only to" in line and f"not {family}" in line and "families." in line


def test_a_family_key_applies_to_the_drawn_families_that_read_it(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("model: {family: {choice: [unet, vae]}}\nfamilies:\n  vae: {train: {kl_weight: 0.01}}\n")
    load_space(path)
    path.write_text("model: {family: {choice: [unet, ae]}, latent_dim: 16}\n")  # the U-Net ignores it
    load_space(path)
    path.write_text("model: {family: {choice: [unet, ae]}}\nfamilies:\n  unet: {model: {latent_dim: 16}}\n")
    with pytest.raises(RunnerError, match="model.latent_dim applies only to ae, vae, not unet"):
        load_space(path)


def test_an_unknown_family_under_families_names_the_registered_ones(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("model: {family: unet}\nfamilies:\n  gan: {train: {lr: 0.1}}\n")
    with pytest.raises(RunnerError, match="unknown model family 'gan' under families .*; valid: ae, vae, unet"):
        load_space(path)


def test_tune_refuses_a_space_that_sets_epochs_which_train_accepts(capsys, tmp_path):
    trial = trial_yaml("train", "epochs", 3)
    line = run(capsys, tmp_path, "tune", trial)
    assert "train.epochs is set by runner tune" in line and "tune.max_epochs" in line and "--max-epochs" in line
    assert TrialConfig.from_dict(trial).train.epochs == 3


@pytest.mark.parametrize("spec, fragment", [
    ("{norm: {choice: [batch, layer]}}", "model.norm is 'layer'"),
    ("{bottleneck: {uniform: [8, 16]}}", "model.bottleneck must be an integer, got 8.0"),
    ("{latent_dim: {int: [0, 8]}, family: ae}", "model.latent_dim must be greater than 0, got 0"),
    ("{widths: [4], depth: 2}", "model.widths and model.base_width/depth both set the widths"),
    ("{base_width: 4.5}", "model.base_width must be an integer greater than 0, got 4.5"),
])
def test_every_value_a_distribution_can_draw_is_checked_up_front(tmp_path, spec, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(f"model: {spec}\n")
    with pytest.raises(RunnerError, match=re.escape(fragment)):
        load_space(path)


@pytest.mark.parametrize("text, fragment", [
    ("- model: {family: unet}\n", "must map sections to their keys (model:, train:, ...), got a list"),
    ("", "is empty"),
    ("families: {vae: 5}\n", "families.vae must be a mapping"),
    ("tune: {samples: true}\n", "tune.samples"),
])
def test_a_malformed_file_is_named_for_what_it_is(capsys, tmp_path, text, fragment):
    path = tmp_path / "trial.yaml"
    path.write_text(text)
    code = main(["train", "--config", str(path), "--results", str(tmp_path / "R")])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err
