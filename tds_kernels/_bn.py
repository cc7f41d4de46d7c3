"""BatchNorm bookkeeping for the fused ops, which are functional: they return the batch
statistics (mean, biased variance) and the modules update the running buffers exactly as
``nn.BatchNorm*`` does in training mode (momentum or cumulative average, unbiased variance)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor,
                         count: int) -> None:
    if not (bn.training and bn.track_running_stats):
        return
    bn.num_batches_tracked.add_(1)
    factor = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
    # at least float32 (half-precision statistics would lose the update), float64 kept as float64
    unbiased = var.to(torch.promote_types(var.dtype, torch.float32)) * (count / max(count - 1, 1))
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
    bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), factor)


def uses_batch_stats(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """What nn.BatchNorm decides: batch statistics in training or when no running stats exist."""
    return bn.training or (bn.running_mean is None and bn.running_var is None)
