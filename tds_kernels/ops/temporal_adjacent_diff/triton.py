"""Triton kernels of the temporal adjacent difference, their launchers and ``TRITON_COMPILE_SPECS``.

x (B, T, R) contiguous (R = N*C). A 2-D grid: axis 0 over blocks of R, axis 1 over the B*T frames. Each
program loads its frame's block and the neighbour frame's (t + OFFSET), subtracts in float32 (float64
for float64) and rounds once, as PyTorch does, so the result equals the reference bit for bit; frames
without a neighbour store zeros. The backward computes dx_t = h_t - h_{t-OFFSET} with
h_t = g_t * (sign(x_t - x_{t+OFFSET}) if ABSOLUTE else 1), 0 where frame t has no neighbour.
Runs under ``TRITON_INTERPRET=1`` on CPU tensors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._alloc import empty_like

OFFSETS = {"backward": -1, "forward": 1}  # the neighbour's frame offset of each direction


@triton.jit
def _diff(cur, nb, ABSOLUTE: tl.constexpr):
    d = cur - nb
    if ABSOLUTE:
        d = tl.where(d < 0, -d, d)  # keeps NaN
    return d


@triton.jit
def _h(g_ptr, x_ptr, b, t, offs, in_r, T, R, OFFSET: tl.constexpr, ABSOLUTE: tl.constexpr, IS_F64: tl.constexpr):
    """h_t for one block of R (zeros where frame t or its neighbour is outside the clip)."""
    ok = in_r & (t >= 0) & (t < T) & (t + OFFSET >= 0) & (t + OFFSET < T)
    g = tl.load(g_ptr + (b * T + t) * R + offs, mask=ok, other=0.0)
    if not IS_F64:
        g = g.to(tl.float32)
    if ABSOLUTE:
        cur = tl.load(x_ptr + (b * T + t) * R + offs, mask=ok, other=0.0)
        nb = tl.load(x_ptr + (b * T + t + OFFSET) * R + offs, mask=ok, other=0.0)
        if not IS_F64:
            cur = cur.to(tl.float32)
            nb = nb.to(tl.float32)
        d = cur - nb
        s = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, tl.where(d == 0, 0.0, d)))
        g = g * s
    return g


@triton.jit
def adjacent_diff_fwd_kernel(x_ptr, y_ptr, T, R, OFFSET: tl.constexpr, ABSOLUTE: tl.constexpr,
                             IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    pid_r = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)  # b * T + t
    b = row // T
    t = row % T
    offs = pid_r * BLOCK + tl.arange(0, BLOCK)
    in_r = offs < R
    ok = in_r & (t + OFFSET >= 0) & (t + OFFSET < T)
    cur = tl.load(x_ptr + row * R + offs, mask=ok, other=0.0)
    nb = tl.load(x_ptr + (b * T + t + OFFSET) * R + offs, mask=ok, other=0.0)
    if not IS_F64:
        cur = cur.to(tl.float32)
        nb = nb.to(tl.float32)
    y = tl.where(ok, _diff(cur, nb, ABSOLUTE), 0.0)
    tl.store(y_ptr + row * R + offs, y.to(y_ptr.dtype.element_ty), mask=in_r)


@triton.jit
def adjacent_diff_bwd_kernel(g_ptr, x_ptr, dx_ptr, T, R, OFFSET: tl.constexpr, ABSOLUTE: tl.constexpr,
                             IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    pid_r = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    b = row // T
    t = row % T
    offs = pid_r * BLOCK + tl.arange(0, BLOCK)
    in_r = offs < R
    own = _h(g_ptr, x_ptr, b, t, offs, in_r, T, R, OFFSET, ABSOLUTE, IS_F64)
    other = _h(g_ptr, x_ptr, b, t - OFFSET, offs, in_r, T, R, OFFSET, ABSOLUTE, IS_F64)
    tl.store(dx_ptr + row * R + offs, (own - other).to(dx_ptr.dtype.element_ty), mask=in_r)


def _block(R: int) -> int:
    return min(triton.next_power_of_2(R), 1024)


def forward(x: torch.Tensor, absolute: bool, direction: str) -> torch.Tensor:
    """y = temporal_adjacent_diff(x, absolute, direction); x (B, T, N, C) contiguous."""
    offset = OFFSETS[direction]
    B, T = x.shape[:2]
    R = x[0, 0].numel()
    y = empty_like(x)
    if x.numel() == 0:
        return y
    block = _block(R)
    adjacent_diff_fwd_kernel[(triton.cdiv(R, block), B * T)](
        x, y, T, R, OFFSET=offset, ABSOLUTE=absolute, IS_F64=x.dtype == torch.float64, BLOCK=block)
    return y


def backward(grad_out: torch.Tensor, x: torch.Tensor | None, absolute: bool, direction: str) -> torch.Tensor:
    """dx for grad_out = dL/dy (B, T, N, C) contiguous; x is read only when absolute."""
    offset = OFFSETS[direction]
    if absolute and x is None:
        raise ValueError("temporal_adjacent_diff backward: absolute=True needs x")
    B, T = grad_out.shape[:2]
    R = grad_out[0, 0].numel()
    dx = empty_like(grad_out)
    if grad_out.numel() == 0:
        return dx
    block = _block(R)
    adjacent_diff_bwd_kernel[(triton.cdiv(R, block), B * T)](
        grad_out, x if absolute else grad_out, dx, T, R, OFFSET=offset, ABSOLUTE=absolute,
        IS_F64=grad_out.dtype == torch.float64, BLOCK=block)
    return dx


# Compile-only specs for tests/test_triton_compile.py (sm_90 without a GPU).
TRITON_COMPILE_SPECS = [
    dict(name=f"temporal_adjacent_diff_{kind}_{dt}_{'abs' if a else 'signed'}_{o}", kernel=kernel,
         signature={**{p: f"*{dt}" for p in ptrs}, "T": "i32", "R": "i32", "OFFSET": "constexpr",
                    "ABSOLUTE": "constexpr", "IS_F64": "constexpr", "BLOCK": "constexpr"},
         constexprs={"OFFSET": o, "ABSOLUTE": a, "IS_F64": dt == "fp64", "BLOCK": 1024})
    for kind, kernel, ptrs in (("fwd", adjacent_diff_fwd_kernel, ("x_ptr", "y_ptr")),
                               ("bwd", adjacent_diff_bwd_kernel, ("g_ptr", "x_ptr", "dx_ptr")))
    for dt, a, o in (("fp32", False, -1), ("bf16", True, 1), ("fp16", False, 1))
]
