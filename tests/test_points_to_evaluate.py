"""`tune.points_to_evaluate` in a search space: checked against what the space searches."""

from __future__ import annotations

import pytest

from runner.errors import RunnerError
from runner.space import load_space, searched_parameters

SPACE = """\
tune:
  samples: 3
  points_to_evaluate:
{points}
model:
  family: {{choice: [unet, vae]}}
train:
  loss: {{choice: [fixed, pit]}}
  lr: {{loguniform: [1.0e-4, 1.0e-2]}}
families:
  vae:
    train:
      kl_weight: {{loguniform: [1.0e-4, 1.0e-2]}}
"""


def space_with(tmp_path, points: str):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(points=points))
    return load_space(path)


def test_points_name_parameters_as_optuna_does(tmp_path):
    space = space_with(tmp_path, "    - {train.loss: fixed}\n    - {model.family: vae, vae.train.kl_weight: 1.0e-3}")
    assert space.tune.points_to_evaluate[1] == {"model.family": "vae", "vae.train.kl_weight": 1e-3}
    assert set(searched_parameters(space)) == {"model.family", "train.loss", "train.lr", "vae.train.kl_weight"}


@pytest.mark.parametrize("point, message", [
    ("{train.los: fixed}", "'train.los' is not a searched parameter"),
    ("{train.loss: mixed}", "train.loss = 'mixed' is outside"),
    ("{train.lr: 0.5}", "train.lr = 0.5 is outside"),
    ("{train.lr: fast}", "train.lr = 'fast' is outside"),
])
def test_a_point_outside_the_space_is_refused(tmp_path, point, message):
    with pytest.raises(RunnerError, match=message):
        space_with(tmp_path, f"    - {point}")


def test_points_must_be_a_list_of_mappings(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("tune:\n  points_to_evaluate: train.loss\nmodel:\n  family: unet\n")
    with pytest.raises(RunnerError, match="tune.points_to_evaluate must be a list, got 'train.loss'"):
        load_space(path)
