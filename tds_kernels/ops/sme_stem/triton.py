"""Triton kernels of the fused SME stem (docs/model.md §4 op 3) and their launchers.

Formulation: implicit GEMM with the temporal taps in the reduction dimension. Rows m = (b, t, i, j)
are the output tokens, columns k = (kt, channel, ky, kx) the Conv3d weight's flattened input
(the weight as a (K, d) matrix), so one tile product gives the conv output directly (no tap
combination pass). The (BLOCK_M, BLOCK_K) patch tile is built in registers from the frames
(uint8 or float, any strides): CLIP normalisation ``a_c f + b_c`` for the RGB branch, the
difference ``a_c (f_{k+1} - f_k)`` for the motion branch (the mean cancels), zero where the conv's
padding is read — so neither the normalised frames, the 12-channel difference stack nor the patch
matrix ever exist in memory.

Kernels: ``_conv_kernel`` (both branches, fp32/fp64 accumulators; training: bias-free conv outputs
Z_rgb / Z_mot, eval: the fused output in the epilogue), ``_column_sums_kernel`` (per-channel sums
for the batch statistics and the BatchNorm backward), ``_normalise_kernel`` (BN + fusion),
``_bn_grad_kernel`` (dZ = k1 g + k2 Z + k3) and ``_weight_grad_kernel`` (dW = patches^T . dZ with
the transposed patch tile rebuilt in registers). The per-channel finalisation (statistics ->
coefficients, O(d)) is torch arithmetic mirroring csrc/common/sme_stem_math.h.

Fixed block sizes (the interpreter fails with several autotune configs); fp32 ``tl.dot`` inputs
under the interpreter. On a GPU the fp32 products follow torch's TF32 matmul setting.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._alloc import empty
from .validate import COLOURS, MOT_CHANNELS, TAPS, acc_dtype, geometry, out_dtype, saved_conv_outputs


@triton.jit
def _patch_values(f_ptr, m, k, M, K, T, H, W, T_out, h, w, pt, ph, pw, s_b, s_t, s_k, s_c, s_y, s_x,
                  nrm_ptr, P: tl.constexpr, C: tl.constexpr, MOTION: tl.constexpr, ACC: tl.constexpr):
    """Normalised patch values for broadcastable row indices m (b, t_out, i, j) and column indices
    k (kt, channel, ky, kx); 0 in the conv's zero padding and outside [0, M) x [0, K).
    nrm: (a_0, a_1, a_2, b_0, b_1, b_2) of x = a_c f + b_c, in the accumulation dtype."""
    a0 = tl.load(nrm_ptr)
    a1 = tl.load(nrm_ptr + 1)
    a2 = tl.load(nrm_ptr + 2)
    j = m % w
    q = m // w
    i = q % h
    q = q // h
    t_out = q % T_out
    b = q // T_out
    kx = k % P
    q2 = k // P
    ky = q2 % P
    q2 = q2 // P
    ch = q2 % C
    kt = q2 // C
    t_in = t_out - pt + kt
    y = i * P - ph + ky
    x = j * P - pw + kx
    valid = (m < M) & (k < K) & (t_in >= 0) & (t_in < T) & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    off = b.to(tl.int64) * s_b + t_in * s_t + y * s_y + x * s_x
    if MOTION:
        win = ch // 3
        c = ch % 3
        scale = tl.where(c == 0, a0, tl.where(c == 1, a1, a2))
        f1 = tl.load(f_ptr + off + (win + 1) * s_k + c * s_c, mask=valid, other=0).to(ACC)
        f0 = tl.load(f_ptr + off + win * s_k + c * s_c, mask=valid, other=0).to(ACC)
        v = (f1 - f0) * scale
    else:
        b0 = tl.load(nrm_ptr + 3)
        b1 = tl.load(nrm_ptr + 4)
        b2 = tl.load(nrm_ptr + 5)
        scale = tl.where(ch == 0, a0, tl.where(ch == 1, a1, a2))
        shift = tl.where(ch == 0, b0, tl.where(ch == 1, b1, b2))
        f = tl.load(f_ptr + off + 2 * s_k + ch * s_c, mask=valid, other=0).to(ACC)
        v = f * scale + shift
    return tl.where(valid, v, 0.0)


@triton.jit
def _conv_kernel(f_ptr, wr_ptr, wm_ptr, zr_ptr, zm_ptr, out_ptr, coef_ptr, M, D, T, H, W, T_out, h, w, pt, ph, pw,
                 s_b, s_t, s_k, s_c, s_y, s_x, nrm_ptr, P: tl.constexpr, EVAL: tl.constexpr,
                 ACC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    KR: tl.constexpr = 3 * 3 * P * P     # taps x colours x P x P
    KM: tl.constexpr = 3 * 12 * P * P    # taps x 12 difference channels x P x P
    acc_r = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    for k0 in range(0, KR, BLOCK_K):
        k = k0 + kk
        a = _patch_values(f_ptr, rows[:, None], k[None, :], M, KR, T, H, W, T_out, h, w, pt, ph, pw, s_b, s_t, s_k,
                          s_c, s_y, s_x, nrm_ptr, P, 3, False, ACC)
        wt = tl.load(wr_ptr + k[:, None] * D + cols[None, :], mask=(k[:, None] < KR) & (cols[None, :] < D), other=0.0)
        acc_r += tl.dot(a, wt.to(ACC), input_precision=PRECISION)
    acc_m = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    for k0 in range(0, KM, BLOCK_K):
        k = k0 + kk
        a = _patch_values(f_ptr, rows[:, None], k[None, :], M, KM, T, H, W, T_out, h, w, pt, ph, pw, s_b, s_t, s_k,
                          s_c, s_y, s_x, nrm_ptr, P, 12, True, ACC)
        wt = tl.load(wm_ptr + k[:, None] * D + cols[None, :], mask=(k[:, None] < KM) & (cols[None, :] < D), other=0.0)
        acc_m += tl.dot(a, wt.to(ACC), input_precision=PRECISION)
    mask = (rows[:, None] < M) & (cols[None, :] < D)
    idx = rows[:, None].to(tl.int64) * D + cols[None, :]
    if EVAL:
        y = _fused(acc_r, acc_m, coef_ptr, cols, cols < D, D)
        tl.store(out_ptr + idx, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(zr_ptr + idx, acc_r, mask=mask)
        tl.store(zm_ptr + idx, acc_m, mask=mask)


@triton.jit
def _column_sums_kernel(zr_ptr, zm_ptr, g_ptr, c_ptr, part_ptr, M, D, MODE: tl.constexpr, ACC: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Partial per-channel sums of one row block into part (row blocks, n_stats, D), around the centres
    c (2, D) (c_r, c_m): MODE 0: (z_r, z_m); 1: ((z_r - c_r)^2, (z_m - c_m)^2);
    2: (g, g (z_r - c_r), g (z_m - c_m), z_r - c_r, z_m - c_m)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cm = cols < D
    mask = (rows[:, None] < M) & cm[None, :]
    idx = rows[:, None].to(tl.int64) * D + cols[None, :]
    zr = tl.load(zr_ptr + idx, mask=mask, other=0.0).to(ACC)
    zm = tl.load(zm_ptr + idx, mask=mask, other=0.0).to(ACC)
    if MODE == 0:
        base = part_ptr + pid_m * 2 * D + cols
        tl.store(base, tl.sum(zr, axis=0), mask=cm)
        tl.store(base + D, tl.sum(zm, axis=0), mask=cm)
    else:
        c_r = tl.load(c_ptr + cols, mask=cm, other=0.0).to(ACC)
        c_m = tl.load(c_ptr + D + cols, mask=cm, other=0.0).to(ACC)
        ar = tl.where(mask, zr - c_r[None, :], 0.0)
        am = tl.where(mask, zm - c_m[None, :], 0.0)
        if MODE == 1:
            base = part_ptr + pid_m * 2 * D + cols
            tl.store(base, tl.sum(ar * ar, axis=0), mask=cm)
            tl.store(base + D, tl.sum(am * am, axis=0), mask=cm)
        else:
            g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(ACC)
            base = part_ptr + pid_m * 5 * D + cols
            tl.store(base, tl.sum(g, axis=0), mask=cm)
            tl.store(base + D, tl.sum(g * ar, axis=0), mask=cm)
            tl.store(base + 2 * D, tl.sum(g * am, axis=0), mask=cm)
            tl.store(base + 3 * D, tl.sum(ar, axis=0), mask=cm)
            tl.store(base + 4 * D, tl.sum(am, axis=0), mask=cm)


@triton.jit
def _normalise_kernel(zr_ptr, zm_ptr, coef_ptr, out_ptr, M, D, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """out = (z_r - shift_r) scale_r + (z_m - shift_m) scale_m + offset; coef (5, D) in that order."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cm = cols < D
    mask = (rows[:, None] < M) & cm[None, :]
    idx = rows[:, None].to(tl.int64) * D + cols[None, :]
    y = _fused(tl.load(zr_ptr + idx, mask=mask, other=0.0), tl.load(zm_ptr + idx, mask=mask, other=0.0), coef_ptr,
               cols, cm, D)
    tl.store(out_ptr + idx, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fused(zr, zm, coef_ptr, cols, cm, D):
    shift_r = tl.load(coef_ptr + cols, mask=cm, other=0.0)[None, :]
    shift_m = tl.load(coef_ptr + D + cols, mask=cm, other=0.0)[None, :]
    scale_r = tl.load(coef_ptr + 2 * D + cols, mask=cm, other=0.0)[None, :]
    scale_m = tl.load(coef_ptr + 3 * D + cols, mask=cm, other=0.0)[None, :]
    offset = tl.load(coef_ptr + 4 * D + cols, mask=cm, other=0.0)[None, :]
    return (zr - shift_r) * scale_r + (zm - shift_m) * scale_m + offset


@triton.jit
def _bn_grad_kernel(zr_ptr, zm_ptr, g_ptr, k_ptr, dzr_ptr, dzm_ptr, M, D, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr):
    """dZ = k1 g + k2 (Z - shift) + k3 for both branches (k: (8, D) = k1r, k2r, k3r, shift_r, k1m, k2m,
    k3m, shift_m); dZ may overwrite Z (a recomputed one), never a saved one."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cm = cols < D
    mask = (rows[:, None] < M) & cm[None, :]
    idx = rows[:, None].to(tl.int64) * D + cols[None, :]
    g = tl.load(g_ptr + idx, mask=mask, other=0.0)
    zr = tl.load(zr_ptr + idx, mask=mask, other=0.0)
    zm = tl.load(zm_ptr + idx, mask=mask, other=0.0)
    k1r = tl.load(k_ptr + cols, mask=cm, other=0.0)[None, :]
    k2r = tl.load(k_ptr + D + cols, mask=cm, other=0.0)[None, :]
    k3r = tl.load(k_ptr + 2 * D + cols, mask=cm, other=0.0)[None, :]
    c_r = tl.load(k_ptr + 3 * D + cols, mask=cm, other=0.0)[None, :]
    k1m = tl.load(k_ptr + 4 * D + cols, mask=cm, other=0.0)[None, :]
    k2m = tl.load(k_ptr + 5 * D + cols, mask=cm, other=0.0)[None, :]
    k3m = tl.load(k_ptr + 6 * D + cols, mask=cm, other=0.0)[None, :]
    c_m = tl.load(k_ptr + 7 * D + cols, mask=cm, other=0.0)[None, :]
    tl.store(dzr_ptr + idx, k1r * g + k2r * (zr - c_r) + k3r, mask=mask)
    tl.store(dzm_ptr + idx, k1m * g + k2m * (zm - c_m) + k3m, mask=mask)


@triton.jit
def _weight_grad_kernel(f_ptr, dz_ptr, dw_ptr, M, D, T, H, W, T_out, h, w, pt, ph, pw, s_b, s_t, s_k, s_c, s_y, s_x,
                        nrm_ptr, P: tl.constexpr, C: tl.constexpr, MOTION: tl.constexpr,
                        ACC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr):
    """dW[k, n] = sum_m patch[m, k] dZ[m, n] for one branch; the patch tile is rebuilt transposed."""
    pid_k = tl.program_id(0)
    pid_n = tl.program_id(1)
    K: tl.constexpr = 3 * C * P * P
    k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mm = tl.arange(0, BLOCK_M)
    acc = tl.zeros([BLOCK_K, BLOCK_N], dtype=ACC)
    for m0 in range(0, M, BLOCK_M):
        rows = m0 + mm
        pt_tile = _patch_values(f_ptr, rows[None, :], k[:, None], M, K, T, H, W, T_out, h, w, pt, ph, pw, s_b, s_t,
                                s_k, s_c, s_y, s_x, nrm_ptr, P, C, MOTION, ACC)
        dz = tl.load(dz_ptr + rows[:, None].to(tl.int64) * D + cols[None, :],
                     mask=(rows[:, None] < M) & (cols[None, :] < D), other=0.0).to(ACC)
        acc += tl.dot(pt_tile, dz, input_precision=PRECISION)
    tl.store(dw_ptr + k[:, None] * D + cols[None, :], acc, mask=(k[:, None] < K) & (cols[None, :] < D))


# ---- launchers --------------------------------------------------------------------------------

_TL = {torch.float32: tl.float32, torch.float64: tl.float64}


def _blocks(d: int, device: torch.device):
    """(BLOCK_M, BLOCK_N, BLOCK_K) of the two GEMM kernels; tl.dot needs >= 16 on each side."""
    block_n = max(16, min(64, triton.next_power_of_2(d)))
    return (64 if device.type == "cuda" else 32), block_n, 32


def _precision(acc: torch.dtype, device: torch.device) -> str:
    """tl.dot input precision: TF32 only where torch's own fp32 matmuls may use it."""
    if acc == torch.float64 or device.type != "cuda":
        return "ieee"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _norm_consts(pixel_mean, pixel_std, acc, device):
    """(a_0, a_1, a_2, b_0, b_1, b_2) of the CLIP normalisation x = a_c f + b_c."""
    a = [1.0 / (255.0 * s) for s in pixel_std]
    b = [-m / s for m, s in zip(pixel_mean, pixel_std)]
    return torch.tensor(a + b, dtype=acc, device=device)


def _weight_matrix(w: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """Conv3d weight (d, C, 3, P, P) -> (3*C*P*P, d), rows (kt, channel, ky, kx)."""
    return w.to(acc).permute(2, 1, 3, 4, 0).reshape(-1, w.shape[0]).contiguous()


def _conv(frames, w_rgb, w_mot, g, pixel_mean, pixel_std, acc, eval_coefs=None, out=None):
    """Bias-free conv outputs (Z_rgb, Z_mot) as (M, d), or with eval_coefs the fused output into out."""
    M, d = g.B * g.T_out * g.h * g.w, g.d
    nrm = _norm_consts(pixel_mean, pixel_std, acc, frames.device)
    wr, wm = _weight_matrix(w_rgb, acc), _weight_matrix(w_mot, acc)
    BM, BN, BK = _blocks(d, frames.device)
    grid = (triton.cdiv(M, BM), triton.cdiv(d, BN))
    dev = frames.device
    if eval_coefs is None:
        zr = torch.empty((M, d), dtype=acc, device=dev)
        zm = torch.empty((M, d), dtype=acc, device=dev)
        target, coefs = zr, zr  # unused pointers in the training variant
    else:
        zr = zm = None
        target, coefs = out, eval_coefs
    _conv_kernel[grid](frames, wr, wm, zr if zr is not None else target, zm if zm is not None else target, target,
                       coefs, M, d, g.T, g.H, g.W, g.T_out, g.h, g.w, *g.padding, *frames.stride(), nrm, P=g.P,
                       EVAL=eval_coefs is not None, ACC=_TL[acc], PRECISION=_precision(acc, dev), BLOCK_M=BM,
                       BLOCK_N=BN, BLOCK_K=BK)
    return zr, zm


def _column_sums(mode, zr, zm, grad, centre, acc):
    """Per-channel sums (see _column_sums_kernel), block partials combined in float64: (n_stats, d)."""
    M, d = zr.shape
    BM, BN = 64, max(16, min(64, triton.next_power_of_2(d)))
    n_blocks = triton.cdiv(M, BM)
    part = torch.empty((n_blocks, 5 if mode == 2 else 2, d), dtype=acc, device=zr.device)
    c = centre.to(acc).contiguous() if centre is not None else zr
    _column_sums_kernel[(n_blocks, triton.cdiv(d, BN))](zr, zm, grad if grad is not None else zr, c, part, M, d,
                                                        MODE=mode, ACC=_TL[acc], BLOCK_M=BM, BLOCK_N=BN)
    return part.to(torch.float64).sum(0)


def _vec(t, d, like):
    return torch.zeros(d, dtype=torch.float64, device=like.device) if t is None or t.numel() == 0 else t.double()


def _forward_coefs(training, sum_z, sq_dev, n, eps, alpha, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                   running, d, like):
    """Mirror of forward_channel (csrc/common/sme_stem_math.h) over all channels, in float64."""
    bias_r, bias_m = _vec(b_rgb, d, like), _vec(b_mot, d, like)
    if training:
        shift_r, shift_m = sum_z[0] / n, sum_z[1] / n
        mean_r, mean_m = shift_r + bias_r, shift_m + bias_m
        var_r, var_m = sq_dev[0] / n, sq_dev[1] / n
    else:
        mean_r, var_r, mean_m, var_m = (t.double() for t in running)
        shift_r, shift_m = mean_r - bias_r, mean_m - bias_m
    rstd_r, rstd_m = (var_r + eps).rsqrt(), (var_m + eps).rsqrt()
    coefs = torch.stack([shift_r, shift_m, gamma_rgb.double() * rstd_r, alpha * gamma_mot.double() * rstd_m,
                         beta_rgb.double() + alpha * beta_mot.double()])
    return (mean_r, var_r, mean_m, var_m), coefs


def forward(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, running_mean_rgb,
            running_var_rgb, running_mean_mot, running_var_mot, pixel_mean, pixel_std, alpha, padding, training, eps):
    g = geometry(frames, w_rgb, padding)
    acc = acc_dtype(frames.dtype, w_rgb.dtype)
    dev = frames.device
    M, d = g.B * g.T_out * g.h * g.w, g.d
    out = empty((g.B, g.T_out, g.h * g.w, d), dtype=out_dtype(frames.dtype, w_rgb.dtype), device=dev)
    if training:
        zr, zm = _conv(frames, w_rgb, w_mot, g, pixel_mean, pixel_std, acc)
        sum_z = _column_sums(0, zr, zm, None, None, acc)
        sq_dev = _column_sums(1, zr, zm, None, sum_z / M, acc)  # two-pass variance around the batch means
        stats, coefs = _forward_coefs(True, sum_z, sq_dev, float(M), eps, alpha, b_rgb, b_mot, gamma_rgb, beta_rgb,
                                      gamma_mot, beta_mot, None, d, zr)
        coefs = coefs.to(acc).contiguous()
        BM, BN = 32, max(16, min(64, triton.next_power_of_2(d)))
        _normalise_kernel[(triton.cdiv(M, BM), triton.cdiv(d, BN))](zr, zm, coefs, out, M, d, BLOCK_M=BM, BLOCK_N=BN)
        saved = tuple(z.view(out.shape).to(out.dtype) for z in (zr, zm))  # kept for the backward
    else:
        saved = tuple(torch.empty(0, dtype=out.dtype, device=dev) for _ in range(2))
        running = (running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot)
        stats, coefs = _forward_coefs(False, None, None, float(M), eps, alpha, b_rgb, b_mot, gamma_rgb, beta_rgb,
                                      gamma_mot, beta_mot, running, d, out)
        _conv(frames, w_rgb, w_mot, g, pixel_mean, pixel_std, acc, eval_coefs=coefs.to(acc).contiguous(), out=out)
    return (out,) + tuple(s.to(acc, copy=True) for s in stats) + saved  # fresh tensors: outputs never alias inputs


def backward(grad_out, frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, mean_rgb,
             var_rgb, mean_mot, var_mot, z_rgb, z_mot, pixel_mean, pixel_std, alpha, padding, training, eps):
    g = geometry(frames, w_rgb, padding)
    acc = acc_dtype(frames.dtype, w_rgb.dtype)
    M, d, n = g.B * g.T_out * g.h * g.w, g.d, float(g.B * g.T_out * g.h * g.w)
    grad = grad_out.to(acc).contiguous().view(M, d)
    if saved_conv_outputs(z_rgb, z_mot, (g.B, g.T_out, g.h * g.w, d)):  # the training forward's Z: read only
        zr, zm = (z.to(acc).contiguous().view(M, d) for z in (z_rgb, z_mot))
        dzr, dzm = torch.empty_like(zr), torch.empty_like(zm)
    else:  # an eval forward keeps none: recompute, and dZ overwrites it
        zr, zm = _conv(frames, w_rgb, w_mot, g, pixel_mean, pixel_std, acc)
        dzr, dzm = zr, zm
    bias_r, bias_m = _vec(b_rgb, d, zr), _vec(b_mot, d, zr)
    centre = torch.stack([mean_rgb.double() - bias_r, mean_mot.double() - bias_m])  # backward_shift
    sum_g, sum_gzr, sum_gzm, sum_zr, sum_zm = _column_sums(2, zr, zm, grad, centre, acc)

    # Mirror of bn_backward_channel (csrc/common/sme_stem_math.h), float64 per channel.
    def branch(wt, gamma, var, sum_gz, sum_z):
        rstd = (var.double() + eps).rsqrt()
        sum_g_xhat = rstd * sum_gz
        k1 = wt * gamma.double() * rstd
        if training:
            k2 = -k1 * rstd * sum_g_xhat / n
            k3 = -k1 * sum_g / n
        else:
            k2 = torch.zeros_like(k1)
            k3 = torch.zeros_like(k1)
        return wt * sum_g_xhat, wt * sum_g, k1 * sum_g + k2 * sum_z + k3 * n, [k1, k2, k3]

    dg_r, db_r, dbias_r, k_r = branch(1.0, gamma_rgb, var_rgb, sum_gzr, sum_zr)
    dg_m, db_m, dbias_m, k_m = branch(alpha, gamma_mot, var_mot, sum_gzm, sum_zm)
    coefs = torch.stack(k_r + [centre[0]] + k_m + [centre[1]]).to(acc).contiguous()
    BM, BN = 32, max(16, min(64, triton.next_power_of_2(d)))
    _bn_grad_kernel[(triton.cdiv(M, BM), triton.cdiv(d, BN))](zr, zm, grad, coefs, dzr, dzm, M, d, BLOCK_M=BM,
                                                              BLOCK_N=BN)

    nrm = _norm_consts(pixel_mean, pixel_std, acc, frames.device)
    BM, BN, BK = _blocks(d, frames.device)
    grads_w = []
    for dz, C, w in ((dzr, COLOURS, w_rgb), (dzm, MOT_CHANNELS, w_mot)):
        K = TAPS * C * g.P * g.P
        dw = torch.empty((K, d), dtype=acc, device=frames.device)
        _weight_grad_kernel[(triton.cdiv(K, BK), triton.cdiv(d, BN))](
            frames, dz, dw, M, d, g.T, g.H, g.W, g.T_out, g.h, g.w, *g.padding, *frames.stride(), nrm, P=g.P, C=C,
            MOTION=C == MOT_CHANNELS, ACC=_TL[acc], PRECISION=_precision(acc, frames.device), BLOCK_M=BM,
            BLOCK_N=BN, BLOCK_K=BK)
        grads_w.append(dw.view(TAPS, C, g.P, g.P, d).permute(4, 1, 0, 2, 3).to(w.dtype).contiguous())

    def bias_grad(v, b):
        return v.to(b.dtype) if b is not None else torch.empty(0, dtype=acc, device=frames.device)

    return (grads_w[0], bias_grad(dbias_r, b_rgb), grads_w[1], bias_grad(dbias_m, b_mot),
            dg_r.to(gamma_rgb.dtype), db_r.to(beta_rgb.dtype), dg_m.to(gamma_mot.dtype), db_m.to(beta_mot.dtype))


# ---- sm_90 compile check ----------------------------------------------------------------------------
# tests/test_triton_compile.py compiles these for an H100 without a GPU (the interpreter never lowers a
# kernel): the GPU block sizes at d = 320 (ViT-B/16, P = 16) and d = 512 (ViT-L/14, P = 14), uint8 frames,
# TF32 dots, training (EVAL False) and eval (EVAL True), tokens in fp32 and bf16.
def _compile_specs():
    specs = []
    ints = ("M", "D", "T", "H", "W", "T_out", "h", "w", "pt", "ph", "pw", "s_b", "s_t", "s_k", "s_c", "s_y", "s_x")
    for d, P, out_dt in ((320, 16, "fp32"), (512, 14, "bf16")):
        BM, BN, BK = 64, max(16, min(64, triton.next_power_of_2(d))), 32
        conv_sig = {"f_ptr": "*u8", "wr_ptr": "*fp32", "wm_ptr": "*fp32", "zr_ptr": "*fp32", "zm_ptr": "*fp32",
                    "out_ptr": f"*{out_dt}", "coef_ptr": "*fp32", **{n: "i32" for n in ints}, "nrm_ptr": "*fp32",
                    **{k: "constexpr" for k in ("P", "EVAL", "ACC", "PRECISION", "BLOCK_M", "BLOCK_N", "BLOCK_K")}}
        for ev in (False, True):
            specs.append(dict(name=f"sme_stem_conv_d{d}_P{P}_eval{int(ev)}", kernel=_conv_kernel, signature=conv_sig,
                              constexprs={"P": P, "EVAL": ev, "ACC": tl.float32, "PRECISION": "tf32",
                                          "BLOCK_M": BM, "BLOCK_N": BN, "BLOCK_K": BK}))
        for mode in (0, 1, 2):
            specs.append(dict(name=f"sme_stem_column_sums_d{d}_mode{mode}", kernel=_column_sums_kernel,
                              signature={"zr_ptr": "*fp32", "zm_ptr": "*fp32", "g_ptr": f"*{out_dt}", "c_ptr": "*fp32",
                                         "part_ptr": "*fp32", "M": "i32", "D": "i32", "MODE": "constexpr",
                                         "ACC": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"},
                              constexprs={"MODE": mode, "ACC": tl.float32, "BLOCK_M": BM, "BLOCK_N": BN}))
        specs.append(dict(name=f"sme_stem_normalise_d{d}_{out_dt}", kernel=_normalise_kernel,
                          signature={"zr_ptr": "*fp32", "zm_ptr": "*fp32", "coef_ptr": "*fp32", "out_ptr": f"*{out_dt}",
                                     "M": "i32", "D": "i32", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"},
                          constexprs={"BLOCK_M": BM, "BLOCK_N": BN}))
        specs.append(dict(name=f"sme_stem_bn_grad_d{d}_{out_dt}", kernel=_bn_grad_kernel,
                          signature={"zr_ptr": "*fp32", "zm_ptr": "*fp32", "g_ptr": f"*{out_dt}", "k_ptr": "*fp32",
                                     "dzr_ptr": "*fp32", "dzm_ptr": "*fp32", "M": "i32", "D": "i32",
                                     "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"},
                          constexprs={"BLOCK_M": BM, "BLOCK_N": BN}))
        for C in (COLOURS, MOT_CHANNELS):
            specs.append(dict(name=f"sme_stem_weight_grad_d{d}_P{P}_C{C}", kernel=_weight_grad_kernel,
                              signature={"f_ptr": "*u8", "dz_ptr": "*fp32", "dw_ptr": "*fp32",
                                         **{n: "i32" for n in ints}, "nrm_ptr": "*fp32",
                                         **{k: "constexpr" for k in ("P", "C", "MOTION", "ACC", "PRECISION",
                                                                     "BLOCK_M", "BLOCK_N", "BLOCK_K")}},
                              constexprs={"P": P, "C": C, "MOTION": C == MOT_CHANNELS, "ACC": tl.float32,
                                          "PRECISION": "tf32", "BLOCK_M": BM, "BLOCK_N": BN, "BLOCK_K": BK}))
    return specs


TRITON_COMPILE_SPECS = _compile_specs()
