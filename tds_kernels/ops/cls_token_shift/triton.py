"""Triton kernel of the CLS token shift (docs/model.md §4 op 4) and its launchers.

x (B, T, C) contiguous. One program per (block of channels, b) loops over the T frames: channels
[0, C//2) of frame t are read from frame t + DIR, channels [C//2, C) from frame t - DIR (DIR = +1
forward, -1 backward, the transposed shift); frames past either end read as zeros. Pure data
movement (no arithmetic), so every dtype is exact. Runs under ``TRITON_INTERPRET=1`` on CPU tensors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._alloc import empty_like


@triton.jit
def cls_token_shift_kernel(x_ptr, y_ptr, T, C, DIR: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_c = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    in_c = offs_c < C
    fold = C // 2
    for t in range(0, T):
        src = tl.where(offs_c < fold, t + DIR, t - DIR)
        ok = in_c & (src >= 0) & (src < T)
        v = tl.load(x_ptr + (b * T + src) * C + offs_c, mask=ok, other=0.0)
        tl.store(y_ptr + (b * T + t) * C + offs_c, v, mask=in_c)


def _launch(x: torch.Tensor, direction: int) -> torch.Tensor:
    B, T, C = x.shape
    y = empty_like(x)
    if x.numel() == 0:
        return y
    block_c = min(triton.next_power_of_2(C), 1024)
    cls_token_shift_kernel[(triton.cdiv(C, block_c), B)](x, y, T, C, DIR=direction, BLOCK_C=block_c)
    return y


def forward(x: torch.Tensor) -> torch.Tensor:
    """y = cls_token_shift(x); x (B, T, C) contiguous."""
    return _launch(x, 1)


def backward(grad_out: torch.Tensor) -> torch.Tensor:
    """dx for grad_out = dL/dy (B, T, C) contiguous: the opposite shift."""
    return _launch(grad_out, -1)


# Compile-only specs for tests/test_triton_compile.py (sm_90 without a GPU).
TRITON_COMPILE_SPECS = [
    dict(name=f"cls_token_shift_{'fwd' if d > 0 else 'bwd'}_{dt}", kernel=cls_token_shift_kernel,
         signature={"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "T": "i32", "C": "i32",
                    "DIR": "constexpr", "BLOCK_C": "constexpr"},
         constexprs={"DIR": d, "BLOCK_C": 512})
    for d, dt in ((1, "fp32"), (-1, "bf16"), (1, "fp16"))
]
