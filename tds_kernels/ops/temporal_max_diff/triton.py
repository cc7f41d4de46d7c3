"""Triton kernels of the temporal max-difference (docs/model.md §4 op 1) and their launchers.

Layout: x (B, T, N, C) contiguous, frames on dim 1. One program per (block of tokens, b): it holds a
(BLOCK_N, BLOCK_C) tile of tokens × all channels and loops over the T frames, so the channel mean of
the mix is a row reduction inside the tile. The window is unrolled (K is a compile-time constant,
k ∈ {3, 5, 7} in practice); frames outside the clip load as -inf, which never wins a max, exactly
like max_pool's -inf padding.

Update rule of max_pool (and of the C++/CUDA kernels, csrc/common/max_diff_math.h): a strictly
larger value or a NaN replaces the running best, so a NaN wins and a tie keeps the first frame.

Backward recomputes from x (nothing but x is saved) which of the K windows containing frame t
pick t as their argmax, and gathers ``dx[t] = G[t] - sum_{s : argmax(s) == t} G[s]``, subtracting in
ascending s like the C++ and CUDA kernels. Runs under ``TRITON_INTERPRET=1`` on CPU tensors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._alloc import empty_like

_TL_ACC = {torch.float64: tl.float64}  # everything else accumulates in fp32


@triton.jit
def _load_g(g_ptr, row, tile, mask, C, MIX: tl.constexpr, ACC: tl.constexpr):
    """G = dL/dm for one frame: grad_out, or its mix transpose 0.5*g + 0.5*mean_C(g)."""
    g = tl.load(g_ptr + row + tile, mask=mask, other=0.0).to(ACC)
    if MIX:
        mean = tl.sum(g, axis=1) / C
        g = 0.5 * g + 0.5 * mean[:, None]
    return g


@triton.jit
def temporal_max_diff_fwd_kernel(x_ptr, y_ptr, T, N, C, K: tl.constexpr, MIX: tl.constexpr,
                                 ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_n = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HALF: tl.constexpr = K // 2
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_C)
    mask = (offs_n[:, None] < N) & (offs_c[None, :] < C)
    tile = offs_n[:, None] * C + offs_c[None, :]
    frame = N * C  # elements per frame (int64 offsets come from b)
    for t in range(0, T):
        best = tl.full([BLOCK_N, BLOCK_C], float("-inf"), ACC)
        for d in tl.static_range(K):
            s = t - HALF + d
            ok = (s >= 0) & (s < T)
            v = tl.load(x_ptr + (b * T + s) * frame + tile, mask=mask & ok, other=float("-inf")).to(ACC)
            best = tl.where((v > best) | (v != v), v, best)
        xt = tl.load(x_ptr + (b * T + t) * frame + tile, mask=mask, other=0.0).to(ACC)
        m = xt - best
        if MIX:
            mean = tl.sum(tl.where(mask, m, 0.0), axis=1) / C
            m = 0.5 * m + 0.5 * mean[:, None]
        tl.store(y_ptr + (b * T + t) * frame + tile, m.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def temporal_max_diff_bwd_kernel(g_ptr, x_ptr, dx_ptr, T, N, C, K: tl.constexpr, MIX: tl.constexpr,
                                 ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_n = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HALF: tl.constexpr = K // 2
    FAR: tl.constexpr = 2 * HALF + 1  # "no failure within reach"
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_C)
    mask = (offs_n[:, None] < N) & (offs_c[None, :] < C)
    tile = offs_n[:, None] * C + offs_c[None, :]
    frame = N * C
    for t in range(0, T):
        xt = tl.load(x_ptr + (b * T + t) * frame + tile, mask=mask, other=0.0).to(ACC)
        nan_t = xt != xt
        # Does frame t win the window of frame s = t + e (max_pool's rule: the last NaN, else the first
        # maximum)? Only if every frame of that window before t loses to it (strictly smaller; anything
        # goes when x[t] is NaN) and every frame after t does not beat it (<=, no NaN after a NaN).
        # fl / fr: distance to the first frame on the left / right that breaks this (FAR if none), so
        # window s = t + e is won iff HALF - e < fl and HALF + e < fr: 2K-2 loads instead of K*K.
        fl = tl.full([BLOCK_N, BLOCK_C], FAR, tl.int32)
        fr = tl.full([BLOCK_N, BLOCK_C], FAR, tl.int32)
        for d in tl.static_range(1, 2 * HALF + 1):
            p = t - d
            v = tl.load(x_ptr + (b * T + p) * frame + tile, mask=mask & (p >= 0), other=0.0).to(ACC)
            bad_l = (p >= 0) & ~(nan_t | (v < xt))
            fl = tl.where(bad_l & (fl == FAR), d, fl)
            q = t + d
            w = tl.load(x_ptr + (b * T + q) * frame + tile, mask=mask & (q < T), other=0.0).to(ACC)
            bad_r = (q < T) & ~tl.where(nan_t, w == w, w <= xt)
            fr = tl.where(bad_r & (fr == FAR), d, fr)
        acc = _load_g(g_ptr, (b * T + t) * frame, tile, mask, C, MIX, ACC)
        for i in tl.static_range(K):  # windows s = t + e containing t, ascending like the C++/CUDA kernels
            e = i - HALF
            s = t + e
            s_ok = (s >= 0) & (s < T)
            wins = s_ok & (HALF - e < fl) & (HALF + e < fr)
            g_s = _load_g(g_ptr, (b * T + s) * frame, tile, mask & s_ok, C, MIX, ACC)
            acc = tl.where(wins, acc - g_s, acc)
        tl.store(dx_ptr + (b * T + t) * frame + tile, acc.to(dx_ptr.dtype.element_ty), mask=mask)


def _blocks(N: int, C: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_C): all channels of a token in one row of the tile, ~2K elements per tile."""
    block_c = triton.next_power_of_2(C)
    block_n = max(1, min(triton.next_power_of_2(N), 2048 // block_c))
    return block_n, block_c


def _acc(dtype: torch.dtype):
    return _TL_ACC.get(dtype, tl.float32)


def forward(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    """y = temporal_max_diff(x); x (B, T, N, C) contiguous, fp16/bf16/fp32/fp64."""
    B, T, N, C = x.shape
    y = empty_like(x)
    if x.numel() == 0:
        return y
    block_n, block_c = _blocks(N, C)
    k = min(kernel_size, 2 * T + 1)  # wider windows see the same frames; keeps the unrolled loop short
    grid = (triton.cdiv(N, block_n), B)
    temporal_max_diff_fwd_kernel[grid](x, y, T, N, C, K=k, MIX=mix, ACC=_acc(x.dtype),
                                       BLOCK_N=block_n, BLOCK_C=block_c)
    return y


def backward(grad_out: torch.Tensor, x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    """dx for grad_out = dL/dy; both (B, T, N, C) contiguous with the same dtype."""
    B, T, N, C = x.shape
    dx = empty_like(x)
    if x.numel() == 0:
        return dx
    block_n, block_c = _blocks(N, C)
    k = min(kernel_size, 2 * T + 1)
    grid = (triton.cdiv(N, block_n), B)
    temporal_max_diff_bwd_kernel[grid](grad_out, x, dx, T, N, C, K=k, MIX=mix, ACC=_acc(x.dtype),
                                       BLOCK_N=block_n, BLOCK_C=block_c)
    return dx


# Compile-only specs for tests/test_triton_compile.py (sm_90 without a GPU): each kernel with the three
# input dtypes, spread over window sizes and the mix, at ViT-B/16 TD-Adapter width (d/r = 20 → BLOCK_C 32).
TRITON_COMPILE_SPECS = [
    dict(name=f"temporal_max_diff_{which}_{dt}_k{k}_mix{int(mix)}", kernel=kern,
         signature={**{n: f"*{dt}" for n in names}, "T": "i32", "N": "i32", "C": "i32",
                    "K": "constexpr", "MIX": "constexpr", "ACC": "constexpr", "BLOCK_N": "constexpr",
                    "BLOCK_C": "constexpr"},
         constexprs={"K": k, "MIX": mix, "ACC": tl.float32, "BLOCK_N": 64, "BLOCK_C": 32})
    for which, kern, names in (("fwd", temporal_max_diff_fwd_kernel, ("x_ptr", "y_ptr")),
                               ("bwd", temporal_max_diff_bwd_kernel, ("g_ptr", "x_ptr", "dx_ptr")))
    for dt, k, mix in (("fp32", 3, True), ("bf16", 7, False), ("fp16", 5, True))
]
