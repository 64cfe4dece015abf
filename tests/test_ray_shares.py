"""GPU shares on Ray's grid, on one private Ray that declares one GPU it does not have.

`runner tune --gpus-per-trial 1/k` must run k trials at once on one GPU. Ray keeps resource
amounts in 1/10000ths, and 1/3, 1/6 and 1/7 are not on that grid: were Ray to round a share
up, the k-th trial would wait PENDING for ever. So for k = 2, 3, 6 and 7, the resources
that `gpu_share` and `trial_resources` give a trial are asked of Ray the way Ray Tune asks
for a trial's (`tune.with_resources` turns them into one placement-group bundle), k at
once, and a task in each of the k bundles must be running at the same moment as the
others. One Ray serves every k (a few seconds in all); `tests/test_gpu_scheduling.py` runs a
whole `runner tune` at a share of 0.5 on a fake-GPU head node.
"""

from __future__ import annotations

import time

import pytest

from runner.search.tune import RAY_RESOURCE_STEPS, gpu_share, trial_resources

CPUS = 7                # one per trial at the largest k
WAIT_S = 60             # for k bundles, and for k tasks to meet (generous: workers start on a busy machine)


@pytest.fixture(scope="module")
def one_fake_gpu():
    from runner.search import private_ray_on_loopback

    private_ray_on_loopback()
    import ray

    ray.init(address="local", num_cpus=CPUS, num_gpus=1, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_a_share_is_1_over_k_rounded_down_to_rays_grid():
    for k in range(1, 101):
        steps = round(gpu_share(1 / k) * RAY_RESOURCE_STEPS)
        assert steps / RAY_RESOURCE_STEPS == gpu_share(1 / k)              # on the grid
        assert k * steps <= RAY_RESOURCE_STEPS < k * (steps + 1)           # the largest share that k of fit
    assert [gpu_share(1 / k) for k in (2, 3, 6, 7)] == [0.5, 0.3333, 0.1666, 0.1428]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("k", [2, 3, 6, 7])
def test_k_trials_at_a_share_of_1_over_k_run_at_once_on_one_gpu(one_fake_gpu, k):
    ray = one_fake_gpu
    from ray.tune import PlacementGroupFactory
    from ray.util.placement_group import remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    resources = trial_resources(ray.cluster_resources(), cpus_per_trial=1, gpus_per_trial=gpu_share(1 / k))
    groups = [PlacementGroupFactory([{"CPU": resources["cpu"], "GPU": resources["gpu"]}]).to_placement_group()
              for _ in range(k)]
    try:
        ready, pending = ray.wait([group.ready() for group in groups], num_returns=k, timeout=WAIT_S)
        assert not pending, f"{len(pending)} of {k} trials at a share of {resources['gpu']} would wait PENDING"

        meeting = ray.remote(Meeting).options(num_cpus=0).remote()
        met = ray.get([
            ray.remote(meet).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"],
                          scheduling_strategy=PlacementGroupSchedulingStrategy(group)).remote(meeting, k)
            for group in groups
        ], timeout=WAIT_S + 30)
    finally:
        for group in groups:
            remove_placement_group(group)

    assert all(arrived == k for arrived, _ in met), f"not all {k} ran at once: {met}"
    assert all(gpu_ids == [0] for _, gpu_ids in met)   # each one holds a share of the one GPU


class Meeting:
    """Counts the tasks that have arrived; a task waits here until all k have."""

    def __init__(self):
        self.arrived = 0

    def arrive(self) -> int:
        self.arrived += 1
        return self.arrived

    def count(self) -> int:
        return self.arrived


def meet(meeting, k: int) -> tuple[int, list]:
    """Arrive, then wait until all k tasks have: only tasks running at the same time all see k."""
    import ray

    ray.get(meeting.arrive.remote())
    deadline = time.monotonic() + WAIT_S
    while (arrived := ray.get(meeting.count.remote())) < k and time.monotonic() < deadline:
        time.sleep(0.05)
    return arrived, ray.get_gpu_ids()
