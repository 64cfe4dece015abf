"""Built-in search spaces by name, `runner spaces`, and key=value overrides on the command line."""

from __future__ import annotations

import pytest

from runner.cli import main
from runner.errors import RunnerError
from runner.space import BUILTIN_SPACES, apply_overrides, builtin_spaces, load_space


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_lists_every_built_in_with_its_description(capsys):
    code, out, _ = run(capsys, "spaces")

    listed = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines()}
    assert code == 0 and set(listed) == {path.stem for path in BUILTIN_SPACES.glob("*.yaml")}
    assert listed["unet"] == builtin_spaces()["unet"] == "U-Net widths and learning rate on CIFAR-10"


def test_copy_writes_the_built_in_and_never_overwrites(capsys, tmp_path):
    target = tmp_path / "mine.yaml"

    first, out, _ = run(capsys, "spaces", "copy", "unet", target)
    target.write_text(target.read_text() + "# my edit\n")
    second, _, err = run(capsys, "spaces", "copy", "unet.yaml", target)

    assert first == 0 and "runner tune --space" in out
    assert second == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err
    assert target.read_text() == (BUILTIN_SPACES / "unet.yaml").read_text() + "# my edit\n"


@pytest.mark.parametrize("command", [["tune", "--space"], ["train", "--config"], ["spaces", "copy"]])
def test_an_unknown_name_lists_the_built_ins(capsys, tmp_path, command):
    code, _, err = run(capsys, *command, "nope", *([tmp_path / "x.yaml"] if command[0] == "spaces" else []))

    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "built-ins: " in err and "unet" in err and "best-cpu" in err


def test_a_path_wins_over_a_built_in_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "unet.yaml").write_text("model: {family: unet, widths: [4]}\n")
    monkeypatch.chdir(tmp_path)

    space = load_space("unet.yaml")

    assert space.params["model"]["widths"] == [4] and space.source == str(tmp_path / "unet.yaml")


def test_overrides_set_constants_and_distributions(tmp_path):
    space = load_space("unet", ["train.lr=2e-3", "model.depth=2", "train.batch_size={choice: [16, 32]}"])

    assert space.params["train"]["lr"] == 0.002 and space.params["model"]["depth"] == 2
    assert space.params["train"]["batch_size"] == {"choice": [16, 32]}
    assert space.overrides == ("train.lr=2e-3", "model.depth=2", "train.batch_size={choice: [16, 32]}")
    copy = tmp_path / "space.yaml"
    copy.write_text(space.yaml_text())  # what the experiment keeps for --resume
    assert load_space(copy).params == space.params


def test_overrides_leave_the_yaml_they_change_alone():
    raw = {"train": {"lr": 0.1}}

    assert apply_overrides(raw, ["train.lr=0.2", "tune.samples=3"]) == {"train": {"lr": 0.2}, "tune": {"samples": 3}}
    assert raw == {"train": {"lr": 0.1}}


@pytest.mark.parametrize("override, fragment", [
    ("train.batch_size=0", "train.batch_size must be greater than 0, got 0"),
    ("model.nope=1", "unknown key 'nope' in model"),
    ("train.lr=fast", "train.lr must be a number"),
    ("lr=2e-3", "not section.key=value"),
    ("train.lr", "not section.key=value"),
    ("train.lr={loguniform: [1e-4", "not valid YAML"),
    ("train.batch_size.x=1", "batch_size holds a value, not keys"),
])
@pytest.mark.parametrize("command", [["tune", "--space", "unet"], ["train", "--config", "best-cpu"]])
def test_a_bad_override_is_one_line_like_a_bad_yaml(capsys, command, override, fragment):
    code, _, err = run(capsys, *command, override)

    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err


def test_resume_takes_no_overrides(capsys):
    code, _, err = run(capsys, "tune", "--resume", "anything", "train.lr=2e-3")

    assert code == 2 and "drop train.lr=2e-3" in err


def test_apply_overrides_refuses_a_value_where_keys_go():
    with pytest.raises(RunnerError, match="holds a value"):
        apply_overrides({"train": 5}, ["train.lr=1"])
