"""Triton kernels of the fused TD-Adapter (docs/model.md §4 op 2) and their launchers.

Layout: u (B, T, N, d) contiguous, i.e. rows of d channels ordered (B, T, N); M = B*T*N tokens, h = d/r.

Forward: one kernel, ``_fwd_kernel``, run in passes. A program owns all T frames of BLOCK_N token
positions of one clip (R = TP*BLOCK_N rows, frames padded to TP, a power of two), computes the reduce
b = u w_down^T with tl.dot over d tiles and keeps the narrow tensor in registers through
BN1 → max-difference over T → mix; the narrow intermediates never go to memory:
  * PASS 0: per-program mean / centred sum of squares of b       → BN1 batch statistics (Chan combine)
  * PASS 1: per-program mean / centred cross-products of y0 = mix(m) → BN2 batch statistics, since
            z = y0 w_up^T is linear: mean(z) = mean(y0) w_up^T, var(z)_c = w_c^T Cov(y0) w_c
  * PASS 2: expand y = y0c (s2 w_up)^T + bias with tl.dot tiled over d (BN2 folded) and the gate → out
  * PASS 3: (backward) write b and y0 (narrow) for the backward passes.
Backward (torch for the per-channel algebra, Triton for the rest):
  * ``_bwd_wide_kernel`` PHASE 0: recompute y tile by tile, gate backward → dy in registers; accumulate
    dy w_up' (narrow, stored), dy^T y0c and sum(dy) (atomics) — the d-wide dy is never stored;
  * ``_bwd_narrow_kernel``: mix backward, max-difference backward (argmax recomputed from b, first
    maximum wins like max_pool), on T-grouped blocks;
  * BN1 backward (torch, narrow); ``_bwd_wide_kernel`` PHASE 1: du = gate'(u) g + db w_down and
    dW_down = db^T u (atomics).
The interpreter (TRITON_INTERPRET=1) gets bf16 tl.dot wrong, so there every dot runs in fp32; on a GPU
fp16/bf16 inputs use tensor-core dots with fp32 accumulation, fp32 inputs IEEE fp32 dots.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._alloc import empty as _empty
from ..._dispatch import triton_interpret


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# -------------------------------------------------------------------------------------------- kernels
@triton.jit
def _dot(a, b, LOWP: tl.constexpr):
    """a @ b for the reduce: tensor cores in a's fp16/bf16 (fp32 accumulation), else IEEE fp32."""
    if LOWP:
        return tl.dot(a, b.to(a.dtype))
    return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")


@triton.jit
def _rows(pid_b, pid_n, N, T: tl.constexpr, BLOCK_N: tl.constexpr, R: tl.constexpr):
    """Row r of a T-grouped block is frame r // BLOCK_N of token pid_n*BLOCK_N + r % BLOCK_N."""
    r = tl.arange(0, R)
    t = r // BLOCK_N
    n = pid_n * BLOCK_N + r % BLOCK_N
    valid = (t < T) & (n < N)
    rows = ((pid_b * T + t) * N + n).to(tl.int64)
    return rows, valid


@triton.jit
def _reduce(u_ptr, wd_ptr, rows, valid, D, H, R: tl.constexpr, HP: tl.constexpr, BD: tl.constexpr,
            LOWP: tl.constexpr):
    """b = u[rows] @ w_down^T → (R, HP) fp32 (padded channels are 0)."""
    hc = tl.arange(0, HP)
    acc = tl.zeros((R, HP), dtype=tl.float32)
    for d0 in range(0, D, BD):
        dc = d0 + tl.arange(0, BD)
        ut = tl.load(u_ptr + rows[:, None] * D + dc[None, :], mask=valid[:, None] & (dc[None, :] < D), other=0.0)
        wt = tl.load(wd_ptr + hc[None, :] * D + dc[:, None], mask=(dc[:, None] < D) & (hc[None, :] < H), other=0.0)
        acc += _dot(ut, wt, LOWP)
    return acc


@triton.jit
def _narrow_forward(b, mean1_ptr, scale1_ptr, H, T: tl.constexpr, TP: tl.constexpr, HALF: tl.constexpr,
                    BLOCK_N: tl.constexpr, HP: tl.constexpr, R: tl.constexpr, MIX: tl.constexpr):
    """y0 = mix(v - maxpool_t(v)), v = (b - mean1) * scale1 → (R, HP); padded channels 0."""
    hc = tl.arange(0, HP)
    hm = hc < H
    mean1 = tl.load(mean1_ptr + hc, mask=hm, other=0.0)
    scale1 = tl.load(scale1_ptr + hc, mask=hm, other=0.0)
    v = (b - mean1[None, :]) * scale1[None, :]
    v3 = tl.reshape(v, (TP, BLOCK_N, HP))
    tt = tl.arange(0, TP)[:, None, None]
    pooled = tl.zeros((TP, BLOCK_N, HP), dtype=tl.float32)
    for t in tl.static_range(T):
        win = (tt >= t - HALF) & (tt <= t + HALF) & (tt < T)
        pt = tl.max(tl.where(win, v3, float("-inf")), axis=0)  # (BLOCK_N, HP)
        pooled = tl.where(tt == t, pt[None, :, :], pooled)
    m3 = v3 - pooled
    if MIX:
        cmean = tl.sum(m3, axis=2) / H  # padded channels of m are 0
        m3 = 0.5 * m3 + 0.5 * cmean[:, :, None]
    y0 = tl.reshape(m3, (R, HP))
    return tl.where(hm[None, :], y0, 0.0)


@triton.jit
def _fwd_kernel(u_ptr, wd_ptr, mean1_ptr, scale1_ptr, center2_ptr, wp_ptr, bias_ptr, out_ptr,
                cnt_ptr, pmean_ptr, pm2_ptr, b_ptr, y0_ptr, N, D, H,
                T: tl.constexpr, TP: tl.constexpr, HALF: tl.constexpr, BLOCK_N: tl.constexpr, R: tl.constexpr,
                HP: tl.constexpr, BD: tl.constexpr, MIX: tl.constexpr, GATED: tl.constexpr, PASS: tl.constexpr,
                LOWP: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid = pid_b * tl.num_programs(1) + pid_n
    rows, valid = _rows(pid_b, pid_n, N, T, BLOCK_N, R)
    hc = tl.arange(0, HP)
    hm = hc < H
    b = _reduce(u_ptr, wd_ptr, rows, valid, D, H, R, HP, BD, LOWP)
    if PASS == 0:
        # this block's count, mean and centred sum of squares of b (combined on the host, Chan et al.)
        cnt = tl.sum(valid.to(tl.float32), axis=0)
        bv = tl.where(valid[:, None], b, 0.0)
        mean = tl.sum(bv, axis=0) / cnt
        dev = tl.where(valid[:, None], b - mean[None, :], 0.0)
        tl.store(cnt_ptr + pid, cnt)
        tl.store(pmean_ptr + pid * HP + hc, mean)
        tl.store(pm2_ptr + pid * HP + hc, tl.sum(dev * dev, axis=0))
    else:
        y0 = _narrow_forward(b, mean1_ptr, scale1_ptr, H, T, TP, HALF, BLOCK_N, HP, R, MIX)
        if PASS == 1:
            # count, mean and centred cross-products of y0: BN2's statistics without forming z
            cnt = tl.sum(valid.to(tl.float32), axis=0)
            mean = tl.sum(tl.where(valid[:, None], y0, 0.0), axis=0) / cnt
            dev = tl.where(valid[:, None], y0 - mean[None, :], 0.0)
            cross = tl.dot(tl.trans(dev), dev, input_precision="ieee")  # (HP, HP)
            tl.store(cnt_ptr + pid, cnt)
            tl.store(pmean_ptr + pid * HP + hc, mean)
            tl.store(pm2_ptr + pid * HP * HP + hc[:, None] * HP + hc[None, :], cross)
        elif PASS == 2:
            center2 = tl.load(center2_ptr + hc, mask=hm, other=0.0)
            y0c = tl.where(hm[None, :], y0 - center2[None, :], 0.0)
            for d0 in range(0, D, BD):
                dc = d0 + tl.arange(0, BD)
                dm = dc < D
                wpt = tl.load(wp_ptr + dc[None, :] * H + hc[:, None], mask=hm[:, None] & dm[None, :], other=0.0)
                bias = tl.load(bias_ptr + dc, mask=dm, other=0.0)
                y = tl.dot(y0c, wpt, input_precision="ieee") + bias[None, :]
                msk = valid[:, None] & dm[None, :]
                off = rows[:, None] * D + dc[None, :]
                u = tl.load(u_ptr + off, mask=msk, other=0.0).to(tl.float32)
                if GATED:
                    out = u + u * (tl.sigmoid(y) - 0.5)
                else:
                    out = u + y
                tl.store(out_ptr + off, out.to(out_ptr.dtype.element_ty), mask=msk)
        else:
            off = rows[:, None] * H + hc[None, :]
            msk = valid[:, None] & hm[None, :]
            tl.store(b_ptr + off, b, mask=msk)
            tl.store(y0_ptr + off, y0, mask=msk)


@triton.jit
def _gate_tile(g_ptr, u_ptr, y0c, wp_ptr, bias_ptr, rows, rmask, dc, D, H, HP: tl.constexpr,
               GATED: tl.constexpr):
    """For one (rows, d-tile): (du_direct, dy) of the gate, fp32, zero outside the valid tile."""
    hc = tl.arange(0, HP)
    dm = dc < D
    msk = rmask[:, None] & dm[None, :]
    off = rows[:, None] * D + dc[None, :]
    g = tl.load(g_ptr + off, mask=msk, other=0.0).to(tl.float32)
    if GATED:
        wpt = tl.load(wp_ptr + dc[None, :] * H + hc[:, None], mask=(hc[:, None] < H) & dm[None, :], other=0.0)
        bias = tl.load(bias_ptr + dc, mask=dm, other=0.0)
        y = tl.dot(y0c, wpt, input_precision="ieee") + bias[None, :]
        u = tl.load(u_ptr + off, mask=msk, other=0.0).to(tl.float32)
        s = tl.sigmoid(y)
        du = g * (0.5 + s)
        dy = tl.where(msk, g * u * (s * (1.0 - s)), 0.0)
    else:
        du = g
        dy = g
    return du, dy


@triton.jit
def _bwd_wide_kernel(g_ptr, u_ptr, y0c_ptr, wp_ptr, bias_ptr, wd_ptr, db_ptr, du_ptr, dywp_ptr, gmat_ptr,
                     sdy_ptr, dwd_ptr, M, D, H, BLOCK_M: tl.constexpr, HP: tl.constexpr, BD: tl.constexpr,
                     GATED: tl.constexpr, PHASE: tl.constexpr, LOWP: tl.constexpr):
    pid = tl.program_id(0)
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    rmask = rows < M
    hc = tl.arange(0, HP)
    hm = hc < H
    noff = rows[:, None] * H + hc[None, :]
    nmask = rmask[:, None] & hm[None, :]
    y0c = tl.load(y0c_ptr + noff, mask=nmask, other=0.0)
    if PHASE == 0:
        dywp = tl.zeros((BLOCK_M, HP), dtype=tl.float32)
        for d0 in range(0, D, BD):
            dc = d0 + tl.arange(0, BD)
            dm = dc < D
            _du, dy = _gate_tile(g_ptr, u_ptr, y0c, wp_ptr, bias_ptr, rows, rmask, dc, D, H, HP, GATED)
            wp = tl.load(wp_ptr + dc[:, None] * H + hc[None, :], mask=dm[:, None] & hm[None, :], other=0.0)
            dywp += tl.dot(dy, wp, input_precision="ieee")
            gpart = tl.dot(tl.trans(dy), y0c, input_precision="ieee")  # (BD, HP)
            tl.atomic_add(gmat_ptr + dc[:, None] * H + hc[None, :], gpart, mask=dm[:, None] & hm[None, :])
            tl.atomic_add(sdy_ptr + dc, tl.sum(dy, axis=0), mask=dm)
        tl.store(dywp_ptr + noff, dywp, mask=nmask)
    else:
        db = tl.load(db_ptr + noff, mask=nmask, other=0.0)
        for d0 in range(0, D, BD):
            dc = d0 + tl.arange(0, BD)
            dm = dc < D
            msk = rmask[:, None] & dm[None, :]
            off = rows[:, None] * D + dc[None, :]
            du, _dy = _gate_tile(g_ptr, u_ptr, y0c, wp_ptr, bias_ptr, rows, rmask, dc, D, H, HP, GATED)
            wd = tl.load(wd_ptr + hc[:, None] * D + dc[None, :], mask=hm[:, None] & dm[None, :], other=0.0)
            du += tl.dot(db, wd, input_precision="ieee")
            tl.store(du_ptr + off, du.to(du_ptr.dtype.element_ty), mask=msk)
            u = tl.load(u_ptr + off, mask=msk, other=0.0).to(tl.float32)
            part = tl.dot(tl.trans(db), u, input_precision="ieee")  # (HP, BD)
            tl.atomic_add(dwd_ptr + hc[:, None] * D + dc[None, :], part, mask=hm[:, None] & dm[None, :])


@triton.jit
def _bwd_narrow_kernel(b_ptr, dy0_ptr, mean1_ptr, scale1_ptr, dv_ptr, N, H, T: tl.constexpr, TP: tl.constexpr,
                       HALF: tl.constexpr, BLOCK_N: tl.constexpr, R: tl.constexpr, HP: tl.constexpr,
                       MIX: tl.constexpr):
    """dv = dm - (dm of each window routed to its first argmax of v), dm = mix^T(dy0)."""
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows, valid = _rows(pid_b, pid_n, N, T, BLOCK_N, R)
    hc = tl.arange(0, HP)
    hm = hc < H
    off = rows[:, None] * H + hc[None, :]
    msk = valid[:, None] & hm[None, :]
    mean1 = tl.load(mean1_ptr + hc, mask=hm, other=0.0)
    scale1 = tl.load(scale1_ptr + hc, mask=hm, other=0.0)
    b = tl.load(b_ptr + off, mask=msk, other=0.0)
    dm = tl.load(dy0_ptr + off, mask=msk, other=0.0)
    if MIX:  # the mix is symmetric: its backward is the same map
        dm = tl.where(hm[None, :], 0.5 * dm + 0.5 * (tl.sum(dm, axis=1) / H)[:, None], 0.0)
    v3 = tl.reshape((b - mean1[None, :]) * scale1[None, :], (TP, BLOCK_N, HP))
    dm3 = tl.reshape(dm, (TP, BLOCK_N, HP))
    tt = tl.arange(0, TP)[:, None, None]
    dv3 = dm3
    for t in tl.static_range(T):
        win = (tt >= t - HALF) & (tt <= t + HALF) & (tt < T)
        cand = tl.where(win, v3, float("-inf"))
        best = tl.max(cand, axis=0)
        first = tl.min(tl.where(win & (cand == best[None, :, :]), tt, TP), axis=0)  # first maximal frame
        dmt = tl.sum(tl.where(tt == t, dm3, 0.0), axis=0)
        dv3 = dv3 - tl.where(tt == first[None, :, :], dmt[None, :, :], 0.0)
    tl.store(dv_ptr + off, tl.reshape(dv3, (R, HP)), mask=msk)


# ------------------------------------------------------------------------------------------ launchers
def _config(T: int, N: int, D: int, H: int):
    TP = _pow2(T)
    HP = max(16, _pow2(H))
    target = 128 if triton_interpret() else 64  # rows per program
    block_n = max(1, min(_pow2(N), target // TP))
    block_n = max(block_n, 16 // TP if TP < 16 else 1)  # tl.dot needs >= 16 rows
    BD = min(64, max(16, _pow2(D)))
    return dict(TP=TP, HP=HP, BLOCK_N=block_n, R=TP * block_n, BD=BD)


def _lowp(u: torch.Tensor) -> bool:
    return u.dtype in (torch.float16, torch.bfloat16) and not triton_interpret()


def _chan_combine(cnt: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor):
    """Per-block (count, mean, centred second moment) → global (mean, centred second moment), float64."""
    cnt, mean, m2 = cnt.double(), mean.double(), m2.double()
    n = cnt.sum()
    gmean = (cnt[:, None] * mean).sum(0) / n
    dev = mean - gmean
    if m2.dim() == 2:  # per-channel sums of squares
        return gmean, m2.sum(0) + (cnt[:, None] * dev * dev).sum(0)
    return gmean, m2.sum(0) + torch.einsum("p,pi,pj->ij", cnt, dev, dev)


def _narrow_stats(u, wd, mean1, scale1, cfg, T, HALF, mix, passno, grid):
    """Runs PASS 0 or 1 and combines the blocks' statistics."""
    nprog = grid[0] * grid[1]
    HP = cfg["HP"]
    cnt = torch.empty(nprog, device=u.device, dtype=torch.float32)
    pmean = torch.empty(nprog, HP, device=u.device, dtype=torch.float32)
    pm2 = torch.empty((nprog, HP) if passno == 0 else (nprog, HP, HP), device=u.device, dtype=torch.float32)
    B, _, N, D = u.shape
    H = wd.shape[0]
    _fwd_kernel[grid](u, wd, mean1, scale1, u, u, u, u, cnt, pmean, pm2, u, u, N, D, H, T=T, TP=cfg["TP"],
                      HALF=HALF, BLOCK_N=cfg["BLOCK_N"], R=cfg["R"], HP=HP, BD=cfg["BD"], MIX=mix, GATED=False,
                      PASS=passno, LOWP=_lowp(u))
    return _chan_combine(cnt, pmean, pm2)


class _Prep:
    """What forward and backward share: shapes, launch config, weights and the BN1 affine."""

    def __init__(self, u, w_down, w_up, mean1, var1, kernel_size):
        self.u = u.contiguous()
        self.B, self.T, self.N, self.D = u.shape
        self.H = w_down.shape[0]
        self.M = self.B * self.T * self.N
        self.cfg = _config(self.T, self.N, self.D, self.H)
        self.grid = (self.B, triton.cdiv(self.N, self.cfg["BLOCK_N"]))
        self.half = min(kernel_size // 2, self.T)
        self.wd = w_down.to(torch.float32).contiguous()
        self.wud = w_up.to(torch.float64)
        self.mean1, self.var1 = mean1, var1

    def bn1(self, gamma1, eps):
        self.invstd1 = (self.var1.double() + eps).rsqrt()
        self.scale1 = (gamma1.double() * self.invstd1).float().contiguous()
        self.mean1 = self.mean1.float().contiguous()

    def bn2(self, gamma2, beta2, mean2, var2, eps, training):
        self.mean2, self.var2 = mean2.double(), var2.double()
        self.invstd2 = (self.var2 + eps).rsqrt()
        self.scale2 = gamma2.double() * self.invstd2
        self.wp = (self.wud * self.scale2[:, None]).float().contiguous()
        bias = beta2.double() if training else beta2.double() - self.scale2 * self.mean2
        self.bias = bias.float().contiguous()

    def launch(self, passno, mix, gated, center2=None, out=None, b=None, y0=None):
        c = self.cfg
        u = self.u
        _fwd_kernel[self.grid](u, self.wd, self.mean1, self.scale1, center2 if center2 is not None else u,
                               getattr(self, "wp", u), getattr(self, "bias", u), out if out is not None else u,
                               u, u, u, b if b is not None else u, y0 if y0 is not None else u, self.N, self.D,
                               self.H, T=self.T, TP=c["TP"], HALF=self.half, BLOCK_N=c["BLOCK_N"], R=c["R"],
                               HP=c["HP"], BD=c["BD"], MIX=mix, GATED=gated, PASS=passno, LOWP=_lowp(u))


def forward(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
            running_var2, training, eps, kernel_size, mix, gated):
    p = _Prep(u, w_down, w_up, running_mean1, running_var1, kernel_size)
    dev = u.device
    if training:
        mean1, m2 = _narrow_stats(p.u, p.wd, p.wd, p.wd, p.cfg, p.T, p.half, mix, 0, p.grid)
        p.mean1, p.var1 = mean1[:p.H], m2[:p.H] / p.M
    p.bn1(gamma1, eps)
    if training:
        ybar, S = _narrow_stats(p.u, p.wd, p.mean1, p.scale1, p.cfg, p.T, p.half, mix, 1, p.grid)
        ybar, S = ybar[:p.H], S[:p.H, :p.H]
        mean2 = p.wud @ ybar
        var2 = ((p.wud @ S) * p.wud).sum(1) / p.M
        center2 = ybar.float().contiguous()
    else:
        mean2, var2 = running_mean2, running_var2
        center2 = torch.zeros(p.H, device=dev, dtype=torch.float32)
    p.bn2(gamma2, beta2, mean2, var2, eps, training)
    out = _empty(u.shape, dtype=u.dtype, device=dev)
    p.launch(2, mix, gated, center2=center2, out=out)
    acc = torch.float32
    return (out, p.mean1.to(acc).clone(), p.var1.to(acc).clone(), p.mean2.to(acc).clone(), p.var2.to(acc).clone())


def backward(grad_out, u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2, training, eps,
             kernel_size, mix, gated):
    p = _Prep(u, w_down, w_up, mean1, var1, kernel_size)
    p.bn1(gamma1, eps)
    p.bn2(gamma2, beta2, mean2, var2, eps, training)
    dev, M, H, D = u.device, p.M, p.H, p.D
    f32 = dict(device=dev, dtype=torch.float32)
    # narrow recompute: b and y0 = mix(maxdiff(BN1(b)))
    b = torch.empty(M, H, **f32)
    y0 = torch.empty(M, H, **f32)
    p.launch(3, mix, gated, b=b, y0=y0)
    if training:
        y0d = y0.double()
        y0d = y0d - y0d.mean(0)
        S = y0d.T @ y0d
        y0c = y0d.float().contiguous()
    else:
        y0c = y0
    g = grad_out.to(u.dtype).contiguous()
    c = p.cfg
    BLOCK_M = 64
    grid = (triton.cdiv(M, BLOCK_M),)
    dywp = torch.empty(M, H, **f32)
    gmat = torch.zeros(D, H, **f32)
    sdy = torch.zeros(D, **f32)
    _bwd_wide_kernel[grid](g, p.u, y0c, p.wp, p.bias, p.wd, y0c, g, dywp, gmat, sdy, gmat, M, D, H,
                           BLOCK_M=BLOCK_M, HP=c["HP"], BD=c["BD"], GATED=gated, PHASE=0, LOWP=_lowp(u))
    # BN2 + expand backward in narrow terms (as csrc/host/td_adapter.cpp)
    G, Sdy, Wud = gmat.double(), sdy.double(), p.wud
    rowGW = (G * Wud).sum(1)
    dy0 = dywp
    if training:
        dgamma2 = p.invstd2 * rowGW
        kz = dgamma2 * p.invstd2 / M
        dWu = p.scale2[:, None] * (G - kz[:, None] * (Wud @ S))
        r = Wud.T @ (p.scale2 * Sdy / M)
        Q = Wud.T @ (Wud * (p.scale2 * kz)[:, None])
        dy0 = dy0 - r.float() - y0c @ Q.float()
    else:
        dgamma2 = p.invstd2 * (rowGW - p.mean2 * Sdy)
        dWu = p.scale2[:, None] * G
    dy0 = dy0.contiguous()
    # mix + max-difference backward
    dv = torch.empty(M, H, **f32)
    _bwd_narrow_kernel[p.grid](b, dy0, p.mean1, p.scale1, dv, p.N, H, T=p.T, TP=c["TP"], HALF=p.half,
                               BLOCK_N=c["BLOCK_N"], R=c["R"], HP=c["HP"], MIX=mix)
    # BN1 backward (narrow)
    xhat = (b.double() - p.mean1.double()) * p.invstd1
    dvd = dv.double()
    dbeta1 = dvd.sum(0)
    dgamma1 = (dvd * xhat).sum(0)
    if training:
        dvd = dvd - dbeta1 / M - xhat * (dgamma1 / M)
    db = (p.scale1.double() * dvd).float().contiguous()
    # reduce backward: du = du_direct + db w_down, dW_down = db^T u
    du = _empty(u.shape, dtype=u.dtype, device=dev)
    dwd = torch.zeros(H, D, **f32)
    _bwd_wide_kernel[grid](g, p.u, y0c, p.wp, p.bias, p.wd, db, du, dywp, gmat, sdy, dwd, M, D, H,
                           BLOCK_M=BLOCK_M, HP=c["HP"], BD=c["BD"], GATED=gated, PHASE=1, LOWP=_lowp(u))
    return (du, dwd.to(w_down.dtype), dWu.to(w_up.dtype).contiguous(), dgamma1.to(gamma1.dtype),
            dbeta1.to(beta1.dtype), dgamma2.to(gamma2.dtype), Sdy.to(beta2.dtype))


# ------------------------------------------------------------------------------------------ sm_90 compile check
# tests/test_triton_compile.py compiles these for an H100 without a GPU (the interpreter never lowers a
# kernel). Launch geometry of the ViT-B/16 adapter (d = 320, h = 20, T = 8 → TP 8, HP 32, 8 tokens x 8
# frames per program, BD 64) and of a ViT-L/14 one (T = 16, h = 32) and an odd T = 3; every PASS / PHASE variant.
def _compile_specs():
    specs = []
    for dt, T, H, lowp in (("fp32", 8, 20, False), ("bf16", 16, 32, True), ("fp16", 3, 20, True)):
        cfg = _config(T, 196, 512, H)
        geo = dict(T=T, TP=cfg["TP"], HALF=1, BLOCK_N=cfg["BLOCK_N"], R=cfg["R"], HP=cfg["HP"], BD=cfg["BD"])
        fwd_sig = {n: f"*{dt}" if n in ("u_ptr", "out_ptr") else "*fp32" for n in
                   ("u_ptr", "wd_ptr", "mean1_ptr", "scale1_ptr", "center2_ptr", "wp_ptr", "bias_ptr", "out_ptr",
                    "cnt_ptr", "pmean_ptr", "pm2_ptr", "b_ptr", "y0_ptr")}
        fwd_sig |= {"N": "i32", "D": "i32", "H": "i32"}
        fwd_sig |= {k: "constexpr" for k in ("T", "TP", "HALF", "BLOCK_N", "R", "HP", "BD", "MIX", "GATED", "PASS",
                                             "LOWP")}
        for passno in (0, 1, 2):
            specs.append(dict(name=f"td_adapter_fwd_pass{passno}_{dt}_T{T}", kernel=_fwd_kernel, signature=fwd_sig,
                              constexprs={**geo, "MIX": True, "GATED": True, "PASS": passno, "LOWP": lowp}))
        wide_sig = {n: f"*{dt}" if n in ("g_ptr", "u_ptr", "du_ptr") else "*fp32" for n in
                    ("g_ptr", "u_ptr", "y0c_ptr", "wp_ptr", "bias_ptr", "wd_ptr", "db_ptr", "du_ptr", "dywp_ptr",
                     "gmat_ptr", "sdy_ptr", "dwd_ptr")}
        wide_sig |= {"M": "i32", "D": "i32", "H": "i32"}
        wide_sig |= {k: "constexpr" for k in ("BLOCK_M", "HP", "BD", "GATED", "PHASE", "LOWP")}
        for phase in (0, 1):
            specs.append(dict(name=f"td_adapter_bwd_wide_phase{phase}_{dt}", kernel=_bwd_wide_kernel,
                              signature=wide_sig,
                              constexprs={"BLOCK_M": 64, "HP": cfg["HP"], "BD": cfg["BD"], "GATED": True,
                                          "PHASE": phase, "LOWP": lowp}))
        sig = {**{n: "*fp32" for n in ("b_ptr", "dy0_ptr", "mean1_ptr", "scale1_ptr", "dv_ptr")}, "N": "i32",
               "H": "i32", **{k: "constexpr" for k in ("T", "TP", "HALF", "BLOCK_N", "R", "HP", "MIX")}}
        specs.append(dict(name=f"td_adapter_bwd_narrow_T{T}_h{H}", kernel=_bwd_narrow_kernel, signature=sig,
                          constexprs={k: geo[k] for k in ("T", "TP", "HALF", "BLOCK_N", "R", "HP")} | {"MIX": True}))
    return specs


TRITON_COMPILE_SPECS = _compile_specs()
