"""The device policy (runner.training.device): the whole matrix, on any machine.

`plan_device` is pure, so the GPU cases run here with the facts a GPU machine would give.
`resolve` is tried on this machine's real torch.
"""

import re

import pytest
import torch
from pydantic import ValidationError

from runner.cli import main
from runner.errors import RunnerError
from runner.training.config import TrainConfig
from runner.training.device import DevicePlan, TorchFacts, plan_device, resolve, torch_facts

CPU_ONLY = TorchFacts(torch_version="2.5.1+cpu", cuda_build=None)
NO_DRIVER = TorchFacts(torch_version="2.5.1+cu124", cuda_build="12.4")              # a CUDA build that sees no GPU
ONE_GPU = TorchFacts(torch_version="2.5.1+cu124", cuda_build="12.4", gpus_bf16=(True,))
OLD_GPU = TorchFacts(torch_version="2.5.1+cu124", cuda_build="12.4", gpus_bf16=(False,))  # e.g. a V100: no native bf16
TWO_GPUS = TorchFacts(torch_version="2.5.1+cu124", cuda_build="12.4", gpus_bf16=(True, False))


def plan(facts, gpu_ids=None, requested=None, **config) -> DevicePlan:
    return plan_device(requested=requested, gpu_ids=gpu_ids, facts=facts, **config)


# --- where: a GPU only when the trial was given one ---------------------------------------

@pytest.mark.parametrize("facts", [CPU_ONLY, ONE_GPU])
def test_a_trial_given_no_gpu_stays_on_the_cpu(facts):
    assert plan(facts, gpu_ids=[]) == DevicePlan("cpu", "fp32", channels_last=False, compile=False)


@pytest.mark.parametrize("gpu_ids", [[0], [3], [2, 3]])
def test_a_trial_given_gpus_uses_the_first_visible_one(gpu_ids):
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPUs, so the first is cuda:0 in the process.
    assert plan(TWO_GPUS, gpu_ids=gpu_ids) == DevicePlan("cuda:0", "bf16", channels_last=True, compile=False)


def test_a_trial_given_a_gpu_on_a_cpu_only_torch_stops_with_the_build_and_the_fix():
    with pytest.raises(RunnerError) as error:
        plan(CPU_ONLY, gpu_ids=[0])
    assert str(error.value) == ("this trial was given GPU 0 but the installed torch 2.5.1+cpu is a CPU-only build; "
                                "install a CUDA build of torch (https://pytorch.org/get-started/locally/)")


def test_a_trial_given_a_gpu_that_cuda_cannot_see_names_the_driver():
    with pytest.raises(RunnerError, match=r"torch 2.5.1\+cu124 \(CUDA 12.4\) sees no GPU; check the NVIDIA driver"):
        plan(NO_DRIVER, gpu_ids=[1])


@pytest.mark.parametrize("facts, device", [(CPU_ONLY, "cpu"), (NO_DRIVER, "cpu"), (ONE_GPU, "cuda:0")])
def test_without_ray_a_visible_gpu_is_used(facts, device):
    assert plan(facts, gpu_ids=None).device == device


# --- train.device / runner train --device ---------------------------------------------

@pytest.mark.parametrize("gpu_ids", [None, [], [0]])
def test_an_explicit_cpu_always_wins(gpu_ids):
    assert plan(ONE_GPU, gpu_ids=gpu_ids, requested="cpu").device == "cpu"


@pytest.mark.parametrize("requested, device", [("cuda", "cuda:0"), ("cuda:1", "cuda:1")])
def test_an_explicit_gpu_is_used_without_ray(requested, device):
    assert plan(TWO_GPUS, requested=requested).device == device


def test_an_explicit_gpu_for_a_trial_given_none_is_one_line():
    with pytest.raises(RunnerError, match="train.device is cuda but this trial was given no GPU; .*train.device: cpu"):
        plan(ONE_GPU, gpu_ids=[], requested="cuda")


def test_an_explicit_gpu_on_a_cpu_only_torch_is_one_line():
    with pytest.raises(RunnerError, match=r"train.device is cuda:0 but the installed torch 2.5.1\+cpu is a CPU-only build"):
        plan(CPU_ONLY, requested="cuda:0")


def test_a_gpu_index_past_the_visible_ones_is_one_line():
    with pytest.raises(RunnerError, match="train.device is cuda:2 but this process sees 2 GPU"):
        plan(TWO_GPUS, requested="cuda:2")


@pytest.mark.parametrize("requested", ["gpu", "cuda:x", "CPU", "cuda:"])
def test_an_unknown_device_name_from_the_flag_is_one_line(requested, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("# runner train --config tiny.yaml\nmodel:\n  family: unet\n")
    assert main(["train", "--config", str(config), "--device", requested, "--results", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert f"train.device must be cpu, cuda or cuda:N (N a GPU index), got '{requested}'" in error
    assert error.startswith("runner: error: ") and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "results").exists()


def test_a_device_name_assigned_after_the_config_is_built_is_checked_too():
    train = TrainConfig()
    with pytest.raises(ValidationError, match="must be cpu, cuda or cuda:N"):
        train.device = "gpu"


# --- precision, memory format, threads -------------------------------------------------

@pytest.mark.parametrize("facts, gpu_ids, precision, used", [
    (ONE_GPU, [0], "auto", "bf16"),
    (OLD_GPU, [0], "auto", "fp32"),     # auto: bf16 only where the GPU has it
    (ONE_GPU, [], "auto", "fp32"),      # auto on the CPU: fp32
    (ONE_GPU, [], "bf16", "bf16"),      # asked for: torch's CPU autocast runs bf16 everywhere
    (ONE_GPU, [0], "fp32", "fp32"),
])
def test_precision(facts, gpu_ids, precision, used):
    chosen = plan(facts, gpu_ids=gpu_ids, precision=precision)
    assert (chosen.precision, chosen.fallback) == (used, None)
    assert chosen.autocast_dtype == (torch.bfloat16 if used == "bf16" else None)


def test_bf16_on_a_gpu_without_it_falls_back_to_fp32_and_says_so():
    chosen = plan(TWO_GPUS, requested="cuda:1", precision="bf16")
    assert chosen.precision == "fp32"
    assert chosen.fallback == "train.precision is bf16 but cuda:1 does not support bfloat16: trained in fp32"


@pytest.mark.parametrize("gpu_ids, channels_last, used", [
    ([0], None, True), ([], None, False), ([], True, True), ([0], False, False)])
def test_channels_last_defaults_to_the_gpu_only(gpu_ids, channels_last, used):
    chosen = plan(ONE_GPU, gpu_ids=gpu_ids, channels_last=channels_last)
    assert chosen.channels_last is used
    assert chosen.memory_format == (torch.channels_last if used else torch.contiguous_format)


@pytest.mark.parametrize("threads, cpus, used", [(None, None, None), (None, 2.5, 2), (None, 0.5, 1), (3, 2.0, 3)])
def test_threads_follow_the_cpu_share_unless_set(threads, cpus, used):
    assert plan(CPU_ONLY, gpu_ids=[], threads=threads, cpus=cpus).threads == used


def test_compile_is_carried_on_either_device():
    assert plan(CPU_ONLY, compile=True).compile and plan(ONE_GPU, gpu_ids=[0], compile=True).compile


# --- resolve: this machine's real torch -------------------------------------------------

@pytest.mark.parametrize("train, gpu_ids", [(TrainConfig(), []), (TrainConfig(device="cpu"), [0])])
def test_a_cpu_plan_does_not_query_cuda(monkeypatch, train, gpu_ids):
    """Given no GPU, or told cpu, a trial never asks CUDA anything (it would start a CUDA context on a GPU machine)."""
    def refuse(*args):
        raise AssertionError("CUDA was queried")

    monkeypatch.setattr(torch.cuda, "is_available", refuse)
    monkeypatch.setattr(torch.cuda, "device_count", refuse)
    assert resolve(train, gpu_ids).device == "cpu"
    assert torch_facts(query_cuda=False).gpus_bf16 == ()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA case needs a machine whose torch sees no GPU")
def test_resolve_on_a_machine_without_cuda():
    assert resolve(TrainConfig(), None) == DevicePlan("cpu", "fp32", channels_last=False, compile=False)
    with pytest.raises(RunnerError, match=f"given GPU 0 but .*torch {re.escape(torch.__version__)}"):
        resolve(TrainConfig(), [0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine whose torch sees no GPU")
def test_runner_train_on_a_missing_gpu_is_one_line_before_the_experiment_exists(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("# runner train --config tiny.yaml\nmodel:\n  family: unet\n")
    assert main(["train", "--config", str(config), "--device", "cuda", "--results", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("runner: error: train.device is cuda but ") and error.count("\n") == 1
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
