"""Output allocation shared by the Python launchers (Triton) of every op.

With ``TDS_KERNELS_POISON=1`` (set by the test suite) new outputs are filled with NaN, so a
kernel that leaves part of its output unwritten fails the parity tests instead of passing on
whatever the allocator returned. ``csrc/common/alloc.h`` does the same for the C++/CUDA kernels.
"""
from __future__ import annotations

import os

import torch


def poison_enabled() -> bool:
    return os.environ.get("TDS_KERNELS_POISON", "0") == "1"


def empty(shape, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=device)
    if poison_enabled() and out.is_floating_point():
        out.fill_(float("nan"))
    return out


def empty_like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return empty(t.shape, dtype=dtype or t.dtype, device=t.device)
