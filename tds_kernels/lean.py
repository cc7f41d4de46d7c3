"""Memory-lean autograd compositions: the side network's layer pairs computed with the same values and
gradients as plain autograd, but keeping one activation for backward instead of two. They are what runs
where no fused kernel does (see :func:`tds_kernels.side_mlp`, which chooses among the MLP paths).

* :func:`lean_layernorm_linear` — ``Linear(LayerNorm(x))`` for a frozen input (no grad);
* :func:`lean_batchnorm_linear` — ``Linear(BatchNorm(x))`` on tokens, nn.BatchNorm semantics;
* :func:`lean_gelu_linear` — ``Linear(GELU(h))`` (exact GELU);
* :func:`lean_side_connection` — the side connection ``Linear(LayerNorm(x))`` with its 0.5 / 0.5 mix;
* :func:`lean_temporal_dwconv` — the side block's depthwise temporal convolution (kernel 3 over frames).

Dtypes follow plain autograd under autocast: the matmuls run in the autocast dtype when it is on.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ._bn import update_running_stats, uses_batch_stats

__all__ = ["lean_layernorm_linear", "lean_side_connection", "lean_temporal_dwconv", "lean_batchnorm_linear", "lean_gelu_linear"]


def _autocast_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """The dtype a matmul runs in here: the autocast dtype when autocast is on, else ``default``."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except RuntimeError:  # a device type without autocast support (e.g. meta)
        pass
    return default


def _no_autocast(device_type: str):
    """Autocast off inside the lean functions (they pick their dtypes explicitly); a no-op on device
    types without autocast (meta)."""
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


class _LayerNormLinear(torch.autograd.Function):
    """``Linear(LayerNorm(x))`` for an input x that needs no gradient (a frozen backbone's tokens).

    Plain autograd keeps two C-wide tensors per call: LayerNorm's input and Linear's input (the
    LayerNorm output). Both are functions of ``xhat = (x - mean)/std``, which has no gradient, so this
    keeps xhat only (in the matmul dtype). The affine part is folded into the (tiny) weights, so no
    C-wide pass is spent on it, forward or backward:

    * forward: ``out = xhat (W diag(γ))^T + (b + W β)``, one GEMM on xhat;
    * backward: with ``P = G^T xhat`` (one GEMM) and ``s = Σ_t g_t``: ``dW = P diag(γ) + s β^T``,
      ``db = s``, ``dγ = Σ_j W_j ∘ P_j`` and ``dβ = W^T s`` — plain autograd's second GEMM
      (``G W``, for LayerNorm's backward) and its C-wide elementwise passes are never needed.

    ``scale`` multiplies the output (the side connection's 0.5, folded into the weights: exact for a
    power of two).
    """

    @staticmethod
    def forward(ctx, x, ln_weight, ln_bias, weight, bias, eps: float, scale: float = 1.0):
        compute = _autocast_dtype(x.device.type, weight.dtype)
        with _no_autocast(x.device.type):
            xhat = F.layer_norm(x.to(ln_weight.dtype), x.shape[-1:], None, None, eps).to(compute)
            w, b = _fold_affine(ln_weight, ln_bias, weight, bias, scale)
            out = F.linear(xhat, w.to(compute), None if b is None else b.to(compute))
        ctx.save_for_backward(xhat, ln_weight, ln_bias, weight)
        ctx.has_bias, ctx.scale = bias is not None, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        g = grad_out.reshape(-1, grad_out.shape[-1])
        return (None,) + _layernorm_linear_grads(ctx, ctx.saved_tensors, g, ctx.needs_input_grad[1:5]) + (None, None)


def _fold_affine(ln_weight, ln_bias, weight, bias, scale):
    """(W diag(γ), b + W β), times ``scale``, in the parameters' dtype (float64 for the fold itself)."""
    wd = weight.double()
    w = wd * ln_weight.double()
    b = None if bias is None else bias.double()
    if ln_bias is not None:
        wb = wd @ ln_bias.double()
        b = wb if b is None else b + wb
    w = (w * scale).to(weight.dtype)
    return w, None if b is None else (b * scale).to(weight.dtype)


def _layernorm_linear_grads(ctx, saved, g, need):
    """Gradients (γ, β, W, b) of ``scale · Linear(LayerNorm(x))`` from the output gradient g (rows, d_out)
    and ``saved`` (ctx.saved_tensors, unpacked once), ``need`` flagging which are wanted: one GEMM
    (``P = g^T xhat``) and (d_out, C)-sized algebra (see _LayerNormLinear)."""
    xhat, ln_weight, ln_bias, weight = saved
    compute = xhat.dtype
    xh = xhat.reshape(-1, xhat.shape[-1])
    if not any(need):
        return None, None, None, None
    with _no_autocast(xhat.device.type):
        g = g.to(compute)
        acc = torch.promote_types(weight.dtype, torch.float32)
        P = (g.t() @ xh).to(acc) * ctx.scale                       # (d_out, C)
        s = g.sum(0, dtype=torch.promote_types(compute, torch.float32)).to(acc) * ctx.scale  # (d_out,)
        w = weight.to(acc)
        grad_w = grad_b = grad_ln_w = grad_ln_b = None
        if need[2]:
            grad_w = P * ln_weight.to(acc)
            if ln_bias is not None:
                grad_w = grad_w.addr_(s, ln_bias.to(acc))
            grad_w = grad_w.to(weight.dtype)
        if ctx.has_bias and need[3]:
            grad_b = s.to(weight.dtype)
        if need[0]:
            grad_ln_w = (w * P).sum(0).to(ln_weight.dtype)
        if ln_bias is not None and need[1]:
            grad_ln_b = (s @ w).to(ln_bias.dtype)
    return grad_ln_w, grad_ln_b, grad_w, grad_b


def lean_layernorm_linear(x: torch.Tensor, norm: nn.LayerNorm, linear: nn.Linear) -> torch.Tensor:
    """``linear(norm(x))`` for a constant x (no grad), keeping one normalised copy of x for backward."""
    if x.requires_grad:
        raise ValueError("lean_layernorm_linear: x must not require grad (it is the frozen backbone's output)")
    return _LayerNormLinear.apply(x, norm.weight, norm.bias, linear.weight, linear.bias, norm.eps)


class _SideConnection(torch.autograd.Function):
    """The side connection with its mix (docs/model.md §3): ``p = Linear(LayerNorm(x))`` on the N+1 rows of
    each frame, returns ``(0.5 s + 0.5 p[:, 1:], p[:, 0])``. As _LayerNormLinear (the 0.5 folded into the
    weights: the GEMM writes 0.5 p), plus the mix in one pass; backward assembles the output gradient
    of p in one pass (no zero-filled slice gradients, no accumulation) and spends one GEMM on it."""

    @staticmethod
    def forward(ctx, s, x, ln_weight, ln_bias, weight, bias, eps: float):
        B, T, N, d = s.shape
        half_p = _LayerNormLinear.forward(ctx, x, ln_weight, ln_bias, weight, bias, eps, 0.5).view(B, T, N + 1, d)
        out = torch.add(half_p[:, :, 1:], s, alpha=0.5)  # 0.5 s + 0.5 p: both halves exact
        p_cls = half_p[:, :, 0] * 2
        ctx.scale = 1.0  # the 0.5 is applied to the gradient rows below
        return out, p_cls

    @staticmethod
    def backward(ctx, grad_out, grad_cls):
        saved = ctx.saved_tensors  # unpacked once (activation checkpointing allows no second unpack)
        xhat = saved[0]
        B, T, N, d = grad_out.shape
        g = torch.empty(B, T, N + 1, d, dtype=xhat.dtype, device=xhat.device)  # d out / d p
        torch.mul(grad_out, 0.5, out=g[:, :, 1:])
        g[:, :, 0].copy_(grad_cls)  # autograd materialises unused output gradients as zeros
        grad_s = grad_out * 0.5 if ctx.needs_input_grad[0] else None
        return (grad_s, None) + _layernorm_linear_grads(ctx, saved, g.view(-1, d), ctx.needs_input_grad[2:6]) + (None,)


def lean_side_connection(s: torch.Tensor, x: torch.Tensor, norm: nn.LayerNorm,
                         linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """The side connection and its mix (docs/model.md §3) for a constant x (no grad): with
    ``p = linear(norm(x)).view(B, T, N+1, d)`` (x: (B·T, N+1, C), s: (B, T, N, d)) returns
    ``(0.5 * s + 0.5 * p[:, :, 1:], p[:, :, 0])``, keeping one normalised copy of x for backward."""
    if x.requires_grad:
        raise ValueError("lean_side_connection: x must not require grad (it is the frozen backbone's output)")
    B, T, N, d = s.shape
    if x.dim() != 3 or x.shape[0] != B * T or x.shape[1] != N + 1:
        raise ValueError(f"lean_side_connection: x must be (B*T, N+1, C) = ({B * T}, {N + 1}, C) for s "
                         f"{tuple(s.shape)}, got {tuple(x.shape)}")
    return _SideConnection.apply(s, x, norm.weight, norm.bias, linear.weight, linear.bias, norm.eps)


class _GeluLinear(torch.autograd.Function):
    """``Linear(GELU(h))`` keeping only h for backward (GELU is recomputed), where plain autograd keeps
    both h (for GELU's backward) and GELU(h) (for the matmul's): 4d wide each in the side MLP.
    Dtypes follow plain autograd: GELU in h's dtype, the matmul in the autocast dtype if autocast is on."""

    @staticmethod
    def forward(ctx, h, weight, bias):
        compute = _autocast_dtype(h.device.type, weight.dtype)
        with _no_autocast(h.device.type):
            a = F.gelu(h).to(compute)
            out = F.linear(a, weight.to(compute), None if bias is None else bias.to(compute))
        ctx.save_for_backward(h, weight)
        ctx.compute = compute
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        h, weight = ctx.saved_tensors
        compute = ctx.compute
        g = grad_out.to(compute).reshape(-1, grad_out.shape[-1])
        h2 = h.reshape(-1, h.shape[-1])
        grad_h = grad_w = grad_b = None
        with _no_autocast(h.device.type):
            if ctx.needs_input_grad[1]:
                grad_w = (g.t() @ F.gelu(h2).to(compute)).to(weight.dtype)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = g.sum(0, dtype=torch.promote_types(g.dtype, torch.float32)).to(weight.dtype)
            if ctx.needs_input_grad[0]:
                grad_a = (g @ weight.to(compute)).to(h.dtype)
                grad_h = torch.ops.aten.gelu_backward(grad_a, h2).view(h.shape)
        return grad_h, grad_w, grad_b


def lean_gelu_linear(h: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``linear(gelu(h))`` (exact GELU) keeping only h for backward."""
    return _GeluLinear.apply(h, linear.weight, linear.bias)


class _BatchNormLinear(torch.autograd.Function):
    """``Linear(BatchNorm(x))`` on tokens x (M, d) with the statistics given (batch or running), keeping
    only x for backward: plain autograd keeps x (for BatchNorm's backward) and the normalised tensor
    (for the matmul's); the latter is recomputed from x, the mean and 1/std here.

    The d-wide elementwise work is kept to few passes: BatchNorm's output is one ``x·a + c`` (a = γ/std,
    c = β − mean·a: PyTorch's own CPU BatchNorm formula) and its input gradient one
    ``grad_y·a + (x − mean)·k + k0`` with per-channel k, k0."""

    @staticmethod
    def forward(ctx, x, bn_weight, bn_bias, mean, invstd, weight, bias, batch_stats: bool):
        compute = _autocast_dtype(x.device.type, weight.dtype)
        acc = torch.promote_types(x.dtype, torch.float32)
        with _no_autocast(x.device.type):
            y = _bn_apply(x, bn_weight, bn_bias, mean, invstd, acc).to(x.dtype)  # nn.BatchNorm: x's dtype
            out = F.linear(y.to(compute), weight.to(compute), None if bias is None else bias.to(compute))
        ctx.save_for_backward(x, bn_weight, bn_bias, mean, invstd, weight)
        ctx.compute, ctx.acc, ctx.batch_stats, ctx.has_bias = compute, acc, batch_stats, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, bn_weight, bn_bias, mean, invstd, weight = ctx.saved_tensors
        compute, acc = ctx.compute, ctx.acc
        g = grad_out.to(compute)
        grads = [None] * 8
        with _no_autocast(x.device.type):
            if ctx.needs_input_grad[5]:
                y = _bn_apply(x, bn_weight, bn_bias, mean, invstd, acc).to(x.dtype).to(compute)
                grads[5] = (g.t() @ y).to(weight.dtype)
            if ctx.has_bias and ctx.needs_input_grad[6]:
                grads[6] = g.sum(0, dtype=acc).to(weight.dtype)
            if any(ctx.needs_input_grad[:3]):
                grad_y = (g @ weight.to(compute)).to(acc)
                istd = invstd.to(acc)
                xc = x.to(acc) - mean.to(acc)                   # (x - mean): xhat = xc * invstd
                sum_g, sum_gx = grad_y.sum(0), (grad_y * xc).sum(0) * istd  # sum grad_y, sum grad_y xhat
                grads[1] = sum_gx.to(bn_weight.dtype) if ctx.needs_input_grad[1] else None
                grads[2] = sum_g.to(bn_bias.dtype) if ctx.needs_input_grad[2] else None
                if ctx.needs_input_grad[0]:
                    scale = bn_weight.to(acc) * istd
                    if ctx.batch_stats:  # the batch statistics depend on x as well:
                        # scale (grad_y - sum_g/m - xhat sum_gx/m), as grad_y a + xc k + k0
                        m = x.shape[0]
                        dx = torch.addcmul(-scale * sum_g / m, xc, -scale * istd * sum_gx / m)
                        dx = dx.addcmul_(grad_y, scale)
                    else:
                        dx = grad_y.mul_(scale)
                    grads[0] = dx.to(x.dtype)
        return tuple(grads)


def _bn_apply(x, weight, bias, mean, invstd, acc):
    """BatchNorm's output ``x·a + (β − mean·a)``, a = γ·invstd, in ``acc`` (one pass over x)."""
    a = weight.to(acc) * invstd.to(acc)
    return torch.addcmul(bias.to(acc) - mean.to(acc) * a, x.to(acc), a)


def lean_batchnorm_linear(x: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm, weight: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(bn(x), weight, bias)`` on tokens (..., d), keeping only x for backward. BatchNorm
    semantics are nn.BatchNorm's: batch statistics in training (running statistics updated the same
    way), running statistics in eval."""
    if bn.weight is None or bn.bias is None:  # no affine parameters: nothing to gain, plain layers
        return F.linear(bn(x), weight, bias)
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    batch_stats = uses_batch_stats(bn)
    with torch.no_grad():
        if batch_stats:
            var, mean = torch.var_mean(x2.to(torch.promote_types(x.dtype, torch.float32)), dim=0, unbiased=False)
            update_running_stats(bn, mean, var, x2.shape[0])
        else:
            mean, var = bn.running_mean.clone(), bn.running_var
        invstd = torch.rsqrt(var + bn.eps)
    out = _BatchNormLinear.apply(x2, bn.weight, bn.bias, mean, invstd, weight, bias, batch_stats)
    return out.view(*x.shape[:-1], out.shape[-1])


class _TemporalDWConv(torch.autograd.Function):
    """``out[t] = w0·x[t-1] + w1·x[t] + w2·x[t+1] + b`` per channel on tokens (B, T, N, d), zero frames
    outside. Written as three in-place multiply-adds on frame-shifted views: no zero-padded copy of x
    (plain autograd keeps that (T+2)-frame copy and scatters its gradient back through zero-filled
    buffers); keeps only x. In x's dtype (as the plain form under autocast)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        d = x.shape[-1]
        w = weight.reshape(d, 3).to(x.dtype)
        out = torch.mul(x, w[:, 1]) if bias is None else torch.addcmul(bias.to(x.dtype), x, w[:, 1])
        if x.shape[1] > 1:
            out[:, 1:].addcmul_(x[:, :-1], w[:, 0])
            out[:, :-1].addcmul_(x[:, 1:], w[:, 2])
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        d, T = x.shape[-1], x.shape[1]
        w = weight.reshape(d, 3).to(x.dtype)
        g = g.to(x.dtype)
        acc = torch.promote_types(x.dtype, torch.float32)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mul(g, w[:, 1])
            if T > 1:
                grad_x[:, :-1].addcmul_(g[:, 1:], w[:, 0])
                grad_x[:, 1:].addcmul_(g[:, :-1], w[:, 2])
        dims = (0, 1, 2)
        if ctx.needs_input_grad[1]:
            gw = torch.zeros(d, 3, dtype=acc, device=x.device)
            gw[:, 1] = (g * x).sum(dims, dtype=acc)
            if T > 1:
                gw[:, 0] = (g[:, 1:] * x[:, :-1]).sum(dims, dtype=acc)
                gw[:, 2] = (g[:, :-1] * x[:, 1:]).sum(dims, dtype=acc)
            grad_w = gw.to(weight.dtype).view(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(dims, dtype=acc).to(weight.dtype)
        return grad_x, grad_w, grad_b


def lean_temporal_dwconv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The depthwise ``Conv3d(d, d, (3, 1, 1), padding=(1, 0, 0), groups=d)`` on tokens x (B, T, N, d), with
    that conv's ``weight`` (d, 1, 3, 1, 1) (or (d, 3)) and ``bias`` (d,); keeps only x for backward."""
    if x.dim() != 4:
        raise ValueError(f"lean_temporal_dwconv: x must be (B, T, N, d), got {tuple(x.shape)}")
    d = x.shape[-1]
    if weight.numel() != 3 * d or (bias is not None and bias.shape != (d,)):
        raise ValueError(f"lean_temporal_dwconv: weight must hold (d, 3) = ({d}, 3) values and bias (d,), got "
                         f"{tuple(weight.shape)} and {None if bias is None else tuple(bias.shape)}")
    return _TemporalDWConv.apply(x, weight, bias)
