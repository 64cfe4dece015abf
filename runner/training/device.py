"""The device policy: where a trial trains, in which precision and memory format.

`plan_device` is the whole policy as a pure function of plain values (what the trial was
given, what torch sees, what the config asks), so every case is unit-tested on any
machine. `resolve` gathers the torch facts and calls it.

- A trial uses a GPU only when it was given one (under Ray: `gpu_ids`, and Ray has set
  CUDA_VISIBLE_DEVICES, so its first GPU is cuda:0 in-process). `gpu_ids=None` means
  no Ray (`runner train`): a visible GPU is used, or `train.device` names one.
- A trial given no GPU (`gpu_ids=[]`) or told `train.device: cpu` never queries CUDA.
- Given a GPU or told to use one while torch has no CUDA, the run stops with one line
  naming the installed torch build and the fix; it never trains on the CPU instead.
- `precision: auto` is bf16 autocast on a GPU that supports bf16, fp32 otherwise (the CPU
  included). `precision: bf16` autocasts on the CPU too (torch's CPU autocast runs bf16
  everywhere); on a GPU without bf16 it falls back to fp32, and `fallback` says so.
  Either way the precision actually used is what fit records in its metrics.
- `channels_last: None` means channels-last on a GPU only; `threads: None` means one
  torch thread per CPU of the trial's share when it has one, torch's default otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runner.errors import RunnerError
from runner.training.config import TrainConfig

INSTALL_CUDA_TORCH = "install a CUDA build of torch (https://pytorch.org/get-started/locally/)"


@dataclass(frozen=True)
class TorchFacts:
    """What this process's torch offers; the CUDA fields stay at their defaults when CUDA was not queried."""

    torch_version: str
    cuda_build: str | None = None     # torch.version.cuda: None for a CPU-only build
    gpus_bf16: tuple[bool, ...] = ()  # one entry per visible GPU: whether it computes in bf16 natively


@dataclass(frozen=True)
class DevicePlan:
    device: str                       # cpu | cuda:N
    precision: str                    # bf16 (autocast) | fp32
    channels_last: bool
    compile: bool
    threads: int | None = None        # torch CPU threads; None: torch's default
    fallback: str | None = None       # why the precision differs from the one asked for

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def may_use_cuda(requested: str | None, gpu_ids: list[int] | None) -> bool:
    """False when the plan is the CPU whatever torch sees: then CUDA is not even queried."""
    return requested != "cpu" and gpu_ids != []


def plan_device(
    *,
    requested: str | None,
    gpu_ids: list[int] | None,
    facts: TorchFacts,
    precision: str = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
    threads: int | None = None,
    cpus: float | None = None,
) -> DevicePlan:
    """The device, precision and memory format of a run, or a RunnerError of one line.

    `requested` and `precision` are a checked TrainConfig's (runner/training/config.py names the valid ones).
    """
    device = _choose_device(requested, gpu_ids, facts)
    on_gpu = device != "cpu"
    used, fallback = precision, None
    if precision == "auto":
        used = "bf16" if on_gpu and _has_bf16(device, facts) else "fp32"
    elif precision == "bf16" and on_gpu and not _has_bf16(device, facts):
        used, fallback = "fp32", f"train.precision is bf16 but {device} does not support bfloat16: trained in fp32"
    if threads is None and cpus:
        threads = max(1, int(cpus))   # concurrent trials must not oversubscribe the cores
    return DevicePlan(
        device=device, precision=used, compile=compile, threads=threads, fallback=fallback,
        channels_last=on_gpu if channels_last is None else channels_last,
    )


def _choose_device(requested: str | None, gpu_ids: list[int] | None, facts: TorchFacts) -> str:
    if requested == "cpu":
        return "cpu"
    if gpu_ids == []:
        if requested:
            raise RunnerError(f"train.device is {requested} but this trial was given no GPU; "
                              "give trials GPUs (--gpus-per-trial) or set train.device: cpu")
        return "cpu"
    if not facts.gpus_bf16:
        if gpu_ids:
            raise RunnerError(f"this trial was given GPU {', '.join(map(str, gpu_ids))} but {_no_cuda(facts)}")
        if requested:
            raise RunnerError(f"train.device is {requested} but {_no_cuda(facts)}")
        return "cpu"
    index = int(requested.partition(":")[2] or 0) if requested else 0
    if index >= len(facts.gpus_bf16):
        raise RunnerError(f"train.device is {requested} but this process sees {len(facts.gpus_bf16)} GPU(s), "
                          f"cuda:0 to cuda:{len(facts.gpus_bf16) - 1}; pick one of those")
    return f"cuda:{index}"


def _has_bf16(device: str, facts: TorchFacts) -> bool:
    return facts.gpus_bf16[int(device.partition(":")[2])]


def _no_cuda(facts: TorchFacts) -> str:
    if facts.cuda_build is None:
        return f"the installed torch {facts.torch_version} is a CPU-only build; {INSTALL_CUDA_TORCH}"
    return (f"torch {facts.torch_version} (CUDA {facts.cuda_build}) sees no GPU; "
            "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")


def torch_facts(query_cuda: bool) -> TorchFacts:
    """This process's torch; CUDA is queried only when `query_cuda`."""
    gpus_bf16 = ()
    if query_cuda and torch.cuda.is_available():
        # Native bf16 only (compute capability 8.0 on): torch.cuda.is_bf16_supported() also
        # counts emulated bf16, slower than fp32, and asks only about the current device.
        gpus_bf16 = tuple(bool(torch.version.hip) or torch.cuda.get_device_properties(index).major >= 8
                          for index in range(torch.cuda.device_count()))
    return TorchFacts(torch_version=torch.__version__, cuda_build=torch.version.cuda, gpus_bf16=gpus_bf16)


def resolve(train: TrainConfig, gpu_ids: list[int] | None, *, cpus: float | None = None) -> DevicePlan:
    """The plan for a run of `train` given Ray's `gpu_ids` (None: not under Ray) and CPU share `cpus`."""
    return plan_device(
        requested=train.device, gpu_ids=gpu_ids, facts=torch_facts(may_use_cuda(train.device, gpu_ids)),
        precision=train.precision, channels_last=train.channels_last, compile=train.compile,
        threads=train.threads, cpus=cpus,
    )
