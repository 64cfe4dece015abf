"""A search's data, loaded once by the driver and shared with every trial through Ray.

Without this, every trial read its dataset again: a folder of PNGs was decoded once per
trial, and each trial kept a copy of its own. Now the driver loads the arrays of each
data: section the space can draw (`space.data_sections`) and `tune.with_parameters`
puts them in Ray's object store. Numpy arrays are read from the store without a copy, so
the trials on a node share that node's one copy (`pair_data` wraps it in tensors); a
trial on a GPU moves its arrays to the device once (fit's `build`). Trials on other
nodes receive the arrays from the store, so only the driver needs the data on disk.
"""

from __future__ import annotations

import numpy as np

from runner.config import TrialConfig
from runner.data.sampler import PairData, data_key, load_pair_arrays, pair_data
from runner.data.sources import load_images
from runner.space import SearchSpace, data_sections

SharedData = dict[tuple, dict[str, np.ndarray]]   # data_key -> load_pair_arrays' arrays
MAX_SHARED = 8   # data sections loaded up front; a space that draws more has each trial load its own


def load_shared_data(space: SearchSpace, data_dir: str | None) -> SharedData:
    """Every data: section the space can draw, loaded (downloaded first if it must be).

    A space searched over a range of a loading key (image_size: {int: [32, 64]}) or over
    more than MAX_SHARED sections leaves each trial to load its own; the driver still reads
    each dataset once first, so trials do not race to download it and a missing one stops
    the search before it starts.
    """
    sections, complete = data_sections(space)
    if complete and len(sections) <= MAX_SHARED:
        return {data_key(section): load_pair_arrays(section, data_dir) for section in sections}
    for dataset in {section.dataset for section in sections}:
        load_images(dataset, "train", data_dir)
    return {}


def trial_data(shared: SharedData | None, trial: TrialConfig) -> PairData | None:
    """The trial's shared data as CPU tensors over the store's memory; None: the trial loads its own."""
    arrays = (shared or {}).get(data_key(trial.data))
    return pair_data(arrays) if arrays is not None else None
