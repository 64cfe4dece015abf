"""What a model costs, from its shape alone: parameters, multiply-accumulates, file size.

Cost is a fact of the configuration and the input shape, not of the weights, so it is
counted on a copy of the model on PyTorch's meta device: shapes propagate, no arithmetic
runs, and no random number is drawn (a training run's seeded stream is left as it was).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# The fp32 file `runner export` writes holds each float parameter and buffer as 4 bytes
# (a little less: the exporter folds BatchNorm into the convolutions) and the graph around
# them: nodes, names and shapes, 19-59 KB in the U-Nets, autoencoders and VAEs measured
# (10k to 10.8M parameters). The estimate came within 12% of the real file for the 10k
# parameter models and within 2% for the others.
BYTES_PER_FLOAT = 4
GRAPH_BYTES = 20_000

COST_KEYS = ("params", "macs", "onnx_bytes_estimate")


def model_cost(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """{params, macs, onnx_bytes_estimate} of `model` on one [C, H, W] image, as it infers (eval mode).

    macs: the multiply-accumulates of one forward pass at that size, as counted by
    `torch.utils.flop_counter` (convolutions and matrix products; norms, activations and
    pooling are a small share and are left out, as is usual). onnx_bytes_estimate: the
    size of the fp32 ONNX file `runner export` would write, estimated from the tensors it
    stores, without exporting.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        meta(torch.empty(1, *input_shape, device="meta"))
    stored = [t for t in [*meta.parameters(), *meta.buffers()] if t.is_floating_point()]
    return {
        "params": sum(p.numel() for p in meta.parameters()),
        # FlopCounterMode counts a multiply-add as 2 flops.
        "macs": counter.get_total_flops() // 2,
        "onnx_bytes_estimate": GRAPH_BYTES + BYTES_PER_FLOAT * sum(t.numel() for t in stored),
    }
