"""Every YAML shipped under search_spaces/ loads, and every configuration it can draw builds a
model that separates a batch of the dataset's image size."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from runner.config import TrialConfig
from runner.models import build_model
from runner.space import builtin_spaces, check_for_tune, load_space, resolve_constants, suggest

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))
DRAWS = 6
SHAPES = {"cifar10": (3, 32, 32), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28)}


def drawn_configs(path: Path) -> list[TrialConfig]:
    space = load_space(path)
    if space.is_constant:
        return [resolve_constants(space)]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [TrialConfig.from_dict(suggest(study.ask(), space)["trial"]) for _ in range(DRAWS)]


@pytest.mark.parametrize("path", SPACES, ids=[path.name for path in SPACES])
def test_every_drawn_configuration_builds_and_separates(path):
    description, _, command = path.read_text().splitlines()[:3]
    assert description.startswith("# ") and builtin_spaces()[path.stem] == description[2:]
    assert command.startswith("# runner ") and f" {path.stem} " in f"{command} ", "its command names it"
    if command.startswith("# runner tune"):
        check_for_tune(load_space(path))  # sets nothing that `runner tune` overwrites
    for config in drawn_configs(path):
        channels, height, width = SHAPES[config.data.dataset]
        model = build_model(config.model, channels, (height, width)).eval()
        size_multiple = model.size_multiple
        # U-Nets take any size their levels divide; the AE/VAE only their training size.
        height, width = [-(-side // size_multiple) * size_multiple if model.dynamic_spatial else side
                         for side in (height, width)]
        mixture = torch.rand(2, channels, height, width)
        with torch.no_grad():
            output_1, output_2 = model(mixture)
        assert output_1.shape == output_2.shape == mixture.shape
        assert torch.isfinite(output_1).all() and torch.isfinite(output_2).all()
