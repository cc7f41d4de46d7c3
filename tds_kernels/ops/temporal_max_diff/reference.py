"""Reference definition of the temporal max-difference (docs/model.md §3 TD-Adapter, §4 op 1).

    m = x - maxpool_t(x)        max over frames t-k//2 … t+k//2, stride 1, -inf padding
    y = 0.5·m + 0.5·mean_C(m)   (mix=True: per token, mean over the channel axis)

x is (B, T, N, C) with frames on dim 1. Ties: max_pool1d routes the gradient of a window's
max to the first (lowest t) maximal position; the fused kernels do the same.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def maxpool_t(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    B, T, N, C = x.shape
    xt = x.permute(0, 2, 3, 1).reshape(B, N * C, T)  # frames last for max_pool1d
    pooled = F.max_pool1d(xt, kernel_size, stride=1, padding=kernel_size // 2)
    return pooled.reshape(B, N, C, T).permute(0, 3, 1, 2)


def temporal_max_diff_reference(x: torch.Tensor, kernel_size: int = 3, mix: bool = False) -> torch.Tensor:
    m = x - maxpool_t(x, kernel_size)
    if mix:
        m = 0.5 * m + 0.5 * m.mean(dim=-1, keepdim=True)
    return m
