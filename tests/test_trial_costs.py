"""What a trial costs beyond training. A search's data is loaded once, by the driver, and
reaches its trials through Ray's object store (runner/search/shared_data.py): which data:
sections a space can draw, the trial's copy-free view of the store's arrays. A real search
shows its trials training after the images are gone from disk, and each trial keeping
two checkpoints, its best and its latest. (fit's checkpoint policy: tests/test_checkpoint.py.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from runner.data.sampler import data_key, load_pair_arrays
from runner.results import METRIC, find_checkpoints, trial_histories
from runner.search.shared_data import load_shared_data, trial_data
from runner.space import data_sections, load_space, resolve_constants
from tests.tiny_spaces import tiny_trial


def space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_a_space_with_one_data_section_loads_it_once(tmp_path):
    sections, complete = data_sections(load_space(space_file(tmp_path, tiny_trial())))
    assert complete and [(s.dataset, s.val_images, s.val_pairs) for s in sections] == [("cifar10", 100, 100)]


def test_every_dataset_and_family_section_a_space_draws_is_listed_once(tmp_path):
    space = load_space(space_file(tmp_path, tiny_trial() + """\
families:
  ae:
    data: {val_images: 50}
"""), ["data.dataset={choice: [cifar10, mnist]}", "data.augment={choice: [none, flip]}",
                   "model.family={choice: [unet, ae]}"])
    sections, complete = data_sections(space)
    # augment acts on batches: it loads nothing of its own, so it multiplies nothing.
    assert complete and sorted((s.dataset, s.val_images) for s in sections) == [
        ("cifar10", 50), ("cifar10", 100), ("mnist", 50), ("mnist", 100)]


def test_a_range_over_a_loading_key_leaves_each_trial_to_load_its_own(tmp_path, cifar_dir):
    space = load_space(space_file(tmp_path, tiny_trial(val_images="{int: [100, 120]}")))
    assert data_sections(space)[1] is False
    assert load_shared_data(space, str(cifar_dir)) == {}


def test_a_trial_reads_the_stores_arrays_without_a_copy(tmp_path, cifar_dir):
    config = resolve_constants(load_space(space_file(tmp_path, tiny_trial(lr="1.0e-3"))))
    arrays = load_pair_arrays(config.data, cifar_dir)
    for array in arrays.values():
        array.setflags(write=False)  # as Ray's object store hands numpy arrays out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warning about read-only arrays is expected and silenced
        data = trial_data({data_key(config.data): arrays}, config)
    assert np.shares_memory(data.train.numpy(), arrays["train"]) and np.shares_memory(data.val.numpy(), arrays["val"])
    assert trial_data({}, config) is None   # a section the driver did not load: the trial loads it


# The driver of a search whose image folder is deleted once the driver has loaded it.
DELETE_AFTER_LOADING = """
import shutil, sys
from runner import cli
from runner.search import shared_data, tune

def load_then_delete(space, data_dir):
    shared = shared_data.load_shared_data(space, data_dir)
    shutil.rmtree(data_dir)   # from here on, only Ray's object store holds the images
    return shared

tune.load_shared_data = load_then_delete
sys.exit(cli.main(sys.argv[1:]))
"""


def test_trials_train_on_the_drivers_copy_and_keep_their_best_and_latest_checkpoints(tmp_path, images):
    folder = shutil.copytree(images, tmp_path / "images")
    space = space_file(tmp_path, "tune: {samples: 2, max_epochs: 3, grace_period: 3, checkpoint_every: 1}\n"
                       + tiny_trial(val_images=16).replace("dataset: cifar10", "dataset: folder\n  image_size: 16"))
    done = subprocess.run([sys.executable, "-c", DELETE_AFTER_LOADING, "tune", "--space", str(space), "--name", "gone",
                           "--data-dir", str(folder), "--results", str(tmp_path / "R")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not folder.exists() and "gone: 2 trials: 2 finished" in done.stdout
    assert "MB on disk" in done.stdout

    checkpoints = find_checkpoints(tmp_path / "R" / "gone")
    for trial in {checkpoint.trial for checkpoint in checkpoints}:
        kept = {c.epoch: c.score for c in checkpoints if c.trial == trial}
        scores = {row["epoch"]: row[METRIC] for row in trial_histories(tmp_path / "R" / "gone")[trial]}
        best = max(scores, key=scores.get)
        assert set(kept) == {best, 3}, f"{trial} kept epochs {sorted(kept)} of 3 (best: {best})"
