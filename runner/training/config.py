"""The `train:` section of a trial: optimiser, loss, schedule, budget and precision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    lr: float = 1e-3                  # peak learning rate (Adam)
    batch_size: int = 64
    epochs: int = 10                  # upper bound; a wall-clock budget may end training sooner
    epoch_pairs: int | None = None    # pairs per epoch; None: one per training image
    loss: str = "pit"                 # pit (permutation-invariant) | fixed (head 1 <- a; reproduces the collapse)
    recon: str = "mse"                # mse | l1 | psnr (mean of per-image PSNRs, the metric itself)
    kl_weight: float = 1e-3           # vae only: weight of the KL term
    schedule: str = "constant"        # constant | cosine | onecycle
    weight_decay: float = 0.0         # AdamW decoupled weight decay
    ema: float = 0.0                  # decay of an exponential moving average of the weights; 0 = off
    seed: int = 0
    minutes: float | None = None      # wall-clock budget; ends with a final evaluation and checkpoint
    threads: int | None = None        # torch CPU threads; None: torch's default
    compile: bool = False             # torch.compile the model (GPU runs mostly)
    precision: str = "auto"           # auto (bf16 autocast on GPU, fp32 on CPU) | bf16 (autocast on CPU too) | fp32
    channels_last: bool | None = None # channels-last memory format; None: on GPU only
    device: str | None = None         # cpu | cuda | cuda:N; None: a GPU when the run was given one
