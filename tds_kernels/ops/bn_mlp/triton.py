"""Triton kernels of the fused side-block MLP (BatchNorm → Linear → GELU → Linear) and their launchers.

Same plan as the C++/CUDA host code (csrc/common/bn_mlp_host.h): the GEMMs are torch's (cuBLAS); the
per-element work and the column statistics are the Triton kernels below; the hidden activations exist
one chunk of rows at a time, in forward and again (recomputed) in backward, so autograd keeps only x.

  * ``col_partials_kernel``: per-column partial sums over a block of rows (mode 0: x, mode 1:
    (x - center)^2, mode 2: g * xhat and g), reduced over the blocks in float64 by the launcher, so the
    result does not depend on scheduling;
  * ``bn_apply_kernel``: xn = x * scale + shift (BN as a per-channel affine map), any in/out dtype;
  * ``gelu_kernel`` / ``gelu_backward_kernel``: exact GELU and ga *= GELU'(h);
  * ``bn_backward_apply_kernel``: dx = gamma*rstd*(gxn - dbeta/M - xhat*dgamma/M) (eval: no mean terms).

Arithmetic is fp32 (fp64 for fp64). Runs under ``TRITON_INTERPRET=1`` on CPU tensors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._alloc import empty

# Hidden activations per chunk (elements of h): about 32 MiB in bf16 on a GPU. Tests lower it to
# exercise the chunk loop.
CHUNK_ELEMS = 1 << 24
_ROWS_PER_PART_MIN = 64


@triton.jit
def col_partials_kernel(x_ptr, g_ptr, center_ptr, rstd_ptr, part_ptr, part2_ptr, M, D, rows_per_part,
                        MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_c = tl.program_id(0)
    pid_p = tl.program_id(1)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < D
    if MODE != 0:
        center = tl.load(center_ptr + cols, mask=cmask, other=0.0).to(ACC)
    if MODE == 2:
        rstd = tl.load(rstd_ptr + cols, mask=cmask, other=0.0).to(ACC)
    acc = tl.zeros([BLOCK_C], ACC)
    acc2 = tl.zeros([BLOCK_C], ACC)
    start = pid_p * rows_per_part
    for r0 in range(start, start + rows_per_part, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        mask = (rows[:, None] < M) & cmask[None, :]
        offs = rows[:, None].to(tl.int64) * D + cols[None, :]
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
        if MODE == 0:
            term = x
        elif MODE == 1:
            e = tl.where(mask, x - center[None, :], 0.0)
            term = e * e
        else:
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(ACC)
            term = g * ((x - center[None, :]) * rstd[None, :])
            acc2 += tl.sum(g, axis=0)
        acc += tl.sum(tl.where(mask, term, 0.0), axis=0)
    tl.store(part_ptr + pid_p * D + cols, acc, mask=cmask)
    if MODE == 2:
        tl.store(part2_ptr + pid_p * D + cols, acc2, mask=cmask)


@triton.jit
def bn_apply_kernel(x_ptr, scale_ptr, shift_ptr, y_ptr, R, D, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                    BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < D
    mask = (rows[:, None] < R) & cmask[None, :]
    offs = rows[:, None].to(tl.int64) * D + cols[None, :]
    scale = tl.load(scale_ptr + cols, mask=cmask, other=0.0).to(ACC)
    shift = tl.load(shift_ptr + cols, mask=cmask, other=0.0).to(ACC)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(y_ptr + offs, (x * scale[None, :] + shift[None, :]).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gelu(h):
    return 0.5 * h * (1.0 + tl.math.erf(h * 0.7071067811865476))


@triton.jit
def _gelu_grad(h):
    cdf = 0.5 * (1.0 + tl.math.erf(h * 0.7071067811865476))
    return cdf + h * 0.3989422804014327 * tl.exp(-0.5 * h * h)


@triton.jit
def gelu_kernel(h_ptr, a_ptr, n, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(a_ptr + offs, _gelu(h).to(a_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gelu_backward_kernel(ga_ptr, h_ptr, n, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(ACC)
    ga = tl.load(ga_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(ga_ptr + offs, (ga * _gelu_grad(h)).to(ga_ptr.dtype.element_ty), mask=mask)


@triton.jit
def bn_backward_apply_kernel(gxn_ptr, x_ptr, mean_ptr, rstd_ptr, kx_ptr, km_ptr, kh_ptr, dx_ptr, M, D,
                             ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < D
    mask = (rows[:, None] < M) & cmask[None, :]
    offs = rows[:, None].to(tl.int64) * D + cols[None, :]
    mean = tl.load(mean_ptr + cols, mask=cmask, other=0.0).to(ACC)
    rstd = tl.load(rstd_ptr + cols, mask=cmask, other=0.0).to(ACC)
    kx = tl.load(kx_ptr + cols, mask=cmask, other=0.0).to(ACC)
    km = tl.load(km_ptr + cols, mask=cmask, other=0.0).to(ACC)
    kh = tl.load(kh_ptr + cols, mask=cmask, other=0.0).to(ACC)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    g = tl.load(gxn_ptr + offs, mask=mask, other=0.0).to(ACC)
    xhat = (x - mean[None, :]) * rstd[None, :]
    dx = kx[None, :] * (g - km[None, :] - xhat * kh[None, :])
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ---- launchers -------------------------------------------------------------------------------------

def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tl_acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _block_c(D: int) -> int:
    return min(triton.next_power_of_2(D), 128)


def _col_partials(x, mode, center=None, rstd=None, g=None, acc=torch.float32):
    """Column sums of the mode's term over all rows of x (M, D): (D,) float64 (and the g sums for mode 2)."""
    M, D = x.shape
    rows_per_part = max(_ROWS_PER_PART_MIN, triton.cdiv(M, 1024))
    rows_per_part = triton.cdiv(rows_per_part, 16) * 16
    parts = triton.cdiv(M, rows_per_part)
    part = torch.empty((parts, D), dtype=acc, device=x.device)
    part2 = torch.empty((parts, D), dtype=acc, device=x.device) if mode == 2 else part
    block_c = _block_c(D)
    dummy = part  # pointers the mode does not read
    col_partials_kernel[(triton.cdiv(D, block_c), parts)](
        x, g if g is not None else dummy, center if center is not None else dummy,
        rstd if rstd is not None else dummy, part, part2, M, D, rows_per_part, MODE=mode, ACC=_tl_acc(acc),
        BLOCK_R=16, BLOCK_C=block_c)
    total = part.sum(0, dtype=torch.float64)
    return (total, part2.sum(0, dtype=torch.float64)) if mode == 2 else total


def _bn_apply(x, scale, shift, y):
    R, D = x.shape
    block_c = _block_c(D)
    bn_apply_kernel[(triton.cdiv(R, 32), triton.cdiv(D, block_c))](x, scale, shift, y, R, D, ACC=_tl_acc(scale.dtype),
                                                                   BLOCK_R=32, BLOCK_C=block_c)


def _gelu_launch(h, a):
    n = h.numel()
    gelu_kernel[(triton.cdiv(n, 1024),)](h, a, n, ACC=_tl_acc(h.dtype), BLOCK=1024)


def _gelu_backward_launch(ga, h):
    n = h.numel()
    gelu_backward_kernel[(triton.cdiv(n, 1024),)](ga, h, n, ACC=_tl_acc(h.dtype), BLOCK=1024)


def _rows_per_chunk(M: int, width: int) -> int:
    return max(1, min(M, CHUNK_ELEMS // max(width, 1)))


def _linear(a, w_t, bias, out):
    if bias is None:
        torch.mm(a, w_t, out=out)
    else:
        torch.addmm(bias, a, w_t, out=out)


def _affine(bn_weight, bn_bias, mean, var, eps, acc):
    rstd = torch.rsqrt(var.to(acc) + eps)
    scale = bn_weight.to(acc) * rstd
    return rstd, scale, bn_bias.to(acc) - mean.to(acc) * scale


def forward(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training: bool, eps: float):
    """(out (M, O) in w1's dtype, mean (d,), var (d,)) for x (M, d); see the module docstring."""
    x = x.contiguous()
    M, d = x.shape
    H, O = w1.shape[0], w2.shape[0]
    acc = _acc_dtype(w1.dtype)
    if training:
        mean = (_col_partials(x, 0, acc=acc) / M).to(acc)
        var = (_col_partials(x, 1, center=mean, acc=acc) / M).to(acc)
    else:
        mean, var = running_mean.to(acc).clone(), running_var.to(acc).clone()
    _, scale, shift = _affine(bn_weight, bn_bias, mean, var, eps, acc)
    out = empty((M, O), dtype=w1.dtype, device=x.device)
    R = _rows_per_chunk(M, max(H, d, O))
    xn_buf = torch.empty((R, d), dtype=w1.dtype, device=x.device)
    h_buf = torch.empty((R, H), dtype=w1.dtype, device=x.device)
    for r0 in range(0, M, R):
        r = min(R, M - r0)
        xn, h = xn_buf[:r], h_buf[:r]
        _bn_apply(x[r0:r0 + r], scale, shift, xn)
        _linear(xn, w1.t(), b1, h)
        _gelu_launch(h, h)
        _linear(h, w2.t(), b2, out[r0:r0 + r])
    return out, mean, var


def _accumulate_mm(acc_t, a, b):
    if a.dtype == acc_t.dtype:
        acc_t.addmm_(a, b)
    else:
        acc_t.add_(torch.mm(a, b))


def backward(grad_out, x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var, training: bool, eps: float):
    """(dx, d bn_weight, d bn_bias, dw1, db1, dw2, db2); recomputes BN(x), h, GELU(h) chunk by chunk."""
    x, g = x.contiguous(), grad_out.contiguous()
    M, d = x.shape
    H, O = w1.shape[0], w2.shape[0]
    C, acc = w1.dtype, _acc_dtype(w1.dtype)
    rstd, scale, shift = _affine(bn_weight, bn_bias, mean, var, eps, acc)
    mean_a = mean.to(acc).contiguous()
    gw1 = torch.zeros((H, d), dtype=acc, device=x.device)
    gw2 = torch.zeros((O, H), dtype=acc, device=x.device)
    gb1 = torch.zeros((H,), dtype=acc, device=x.device)
    gxn = torch.empty((M, d), dtype=acc, device=x.device)
    R = _rows_per_chunk(M, max(H, d, O))
    bufs = {name: torch.empty(shape, dtype=C, device=x.device)
            for name, shape in (("xn", (R, d)), ("h", (R, H)), ("a", (R, H)), ("ga", (R, H)))}
    for r0 in range(0, M, R):
        r = min(R, M - r0)
        xn, h, a, ga = (bufs[k][:r] for k in ("xn", "h", "a", "ga"))
        _bn_apply(x[r0:r0 + r], scale, shift, xn)
        _linear(xn, w1.t(), b1, h)
        _gelu_launch(h, a)
        gc = g[r0:r0 + r]
        _accumulate_mm(gw2, gc.t(), a)
        torch.mm(gc, w2, out=ga)
        _gelu_backward_launch(ga, h)
        _accumulate_mm(gw1, ga.t(), xn)
        gb1 += ga.sum(0, dtype=acc)
        if C == acc:
            torch.mm(ga, w1, out=gxn[r0:r0 + r])
        else:
            gxn[r0:r0 + r] = torch.mm(ga, w1)
    dgamma, dbeta = _col_partials(x, 2, center=mean_a, rstd=rstd, g=gxn, acc=acc)
    dgamma, dbeta = dgamma.to(acc), dbeta.to(acc)
    if training:
        k_mean, k_xhat = dbeta / M, dgamma / M
    else:
        k_mean = k_xhat = torch.zeros_like(dbeta)
    dx = empty(x.shape, dtype=x.dtype, device=x.device)
    block_c = _block_c(d)
    bn_backward_apply_kernel[(triton.cdiv(M, 32), triton.cdiv(d, block_c))](
        gxn, x, mean_a, rstd, scale, k_mean, k_xhat, dx, M, d, ACC=_tl_acc(acc), BLOCK_R=32, BLOCK_C=block_c)
    gb1_out = gb1.to(C) if b1 is not None else w1.new_empty((0,))
    gb2_out = g.sum(0, dtype=acc).to(C) if b2 is not None else w1.new_empty((0,))
    return (dx, dgamma.to(bn_weight.dtype), dbeta.to(bn_bias.dtype), gw1.to(C), gb1_out, gw2.to(C), gb2_out)


# Compile-only specs for tests/test_triton_compile.py (sm_90 without a GPU), at the ViT-B/16 side MLP
# (d = 320, H = 1280).
TRITON_COMPILE_SPECS = (
    [dict(name=f"bn_mlp_col_partials_mode{mode}_{dt}", kernel=col_partials_kernel,
          signature={"x_ptr": f"*{dt}", "g_ptr": "*fp32", "center_ptr": "*fp32", "rstd_ptr": "*fp32",
                     "part_ptr": "*fp32", "part2_ptr": "*fp32", "M": "i32", "D": "i32", "rows_per_part": "i32",
                     "MODE": "constexpr", "ACC": "constexpr", "BLOCK_R": "constexpr", "BLOCK_C": "constexpr"},
          constexprs={"MODE": mode, "ACC": tl.float32, "BLOCK_R": 16, "BLOCK_C": 128})
     for mode in (0, 1, 2) for dt in ("fp32", "bf16")]
    + [dict(name=f"bn_mlp_bn_apply_{dt}", kernel=bn_apply_kernel,
            signature={"x_ptr": "*fp32", "scale_ptr": "*fp32", "shift_ptr": "*fp32", "y_ptr": f"*{dt}", "R": "i32",
                       "D": "i32", "ACC": "constexpr", "BLOCK_R": "constexpr", "BLOCK_C": "constexpr"},
            constexprs={"ACC": tl.float32, "BLOCK_R": 32, "BLOCK_C": 128})
       for dt in ("fp32", "bf16", "fp16")]
    + [dict(name=f"bn_mlp_{which}_{dt}", kernel=kern,
            signature={a: f"*{dt}", b: f"*{dt}", "n": "i32", "ACC": "constexpr", "BLOCK": "constexpr"},
            constexprs={"ACC": tl.float32, "BLOCK": 1024})
       for which, kern, a, b in (("gelu", gelu_kernel, "h_ptr", "a_ptr"),
                                 ("gelu_backward", gelu_backward_kernel, "ga_ptr", "h_ptr"))
       for dt in ("fp32", "bf16", "fp16")]
    + [dict(name=f"bn_mlp_bn_backward_apply_{dt}", kernel=bn_backward_apply_kernel,
            signature={"gxn_ptr": "*fp32", "x_ptr": f"*{dt}", "mean_ptr": "*fp32", "rstd_ptr": "*fp32",
                       "kx_ptr": "*fp32", "km_ptr": "*fp32", "kh_ptr": "*fp32", "dx_ptr": f"*{dt}", "M": "i32",
                       "D": "i32", "ACC": "constexpr", "BLOCK_R": "constexpr", "BLOCK_C": "constexpr"},
            constexprs={"ACC": tl.float32, "BLOCK_R": 32, "BLOCK_C": 128})
       for dt in ("fp32", "bf16", "fp16")]
)
