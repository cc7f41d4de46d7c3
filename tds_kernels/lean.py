"""Memory-lean autograd compositions: the side network's layer pairs computed with the same values and
gradients as plain autograd, but keeping one activation for backward instead of two. They are what runs
where no fused kernel does (see :func:`tds_kernels.side_mlp`, which chooses among the MLP paths).

* :func:`lean_layernorm_linear` — ``Linear(LayerNorm(x))`` for a frozen input (no grad);
* :func:`lean_batchnorm_linear` — ``Linear(BatchNorm(x))`` on tokens, nn.BatchNorm semantics;
* :func:`lean_gelu_linear` — ``Linear(GELU(h))`` (exact GELU).

Dtypes follow plain autograd under autocast: the matmuls run in the autocast dtype when it is on.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ._bn import update_running_stats, uses_batch_stats

__all__ = ["lean_layernorm_linear", "lean_batchnorm_linear", "lean_gelu_linear"]


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
    keeps xhat only (in the matmul dtype) and recomputes ``xhat·γ + β`` in backward.
    """

    @staticmethod
    def forward(ctx, x, ln_weight, ln_bias, weight, bias, eps: float):
        compute = _autocast_dtype(x.device.type, weight.dtype)
        with _no_autocast(x.device.type):
            xhat = F.layer_norm(x.to(ln_weight.dtype), x.shape[-1:], None, None, eps)
            y = torch.addcmul(ln_bias, xhat, ln_weight) if ln_bias is not None else xhat * ln_weight
            out = F.linear(y.to(compute), weight.to(compute), None if bias is None else bias.to(compute))
            xhat = xhat.to(compute)
        ctx.save_for_backward(xhat, ln_weight, ln_bias, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        xhat, ln_weight, ln_bias, weight = ctx.saved_tensors
        compute = xhat.dtype
        g = grad_out.to(compute).reshape(-1, grad_out.shape[-1])
        xh = xhat.reshape(-1, xhat.shape[-1])
        grad_ln_w = grad_ln_b = grad_w = grad_b = None
        need_ln = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        with _no_autocast(xhat.device.type):
            if ctx.needs_input_grad[3]:
                y = xh.to(ln_weight.dtype) * ln_weight
                if ln_bias is not None:
                    y = y + ln_bias
                grad_w = (g.t() @ y.to(compute)).to(weight.dtype)
            if ctx.has_bias and ctx.needs_input_grad[4]:
                grad_b = g.sum(0, dtype=torch.promote_types(g.dtype, torch.float32)).to(weight.dtype)
            if need_ln:
                grad_y = (g @ weight.to(compute)).to(ln_weight.dtype)
                if ctx.needs_input_grad[1]:
                    grad_ln_w = (grad_y * xh.to(ln_weight.dtype)).sum(0)
                if ln_bias is not None and ctx.needs_input_grad[2]:
                    grad_ln_b = grad_y.sum(0)
        return None, grad_ln_w, grad_ln_b, grad_w, grad_b, None


def lean_layernorm_linear(x: torch.Tensor, norm: nn.LayerNorm, linear: nn.Linear) -> torch.Tensor:
    """``linear(norm(x))`` for a constant x (no grad), keeping one normalised copy of x for backward."""
    if x.requires_grad:
        raise ValueError("lean_layernorm_linear: x must not require grad (it is the frozen backbone's output)")
    return _LayerNormLinear.apply(x, norm.weight, norm.bias, linear.weight, linear.bias, norm.eps)


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
    (for the matmul's); the latter is recomputed from x, the mean and 1/std here."""

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
                xhat = (x.to(acc) - mean.to(acc)) * invstd.to(acc)
                sum_g, sum_gx = grad_y.sum(0), (grad_y * xhat).sum(0)
                grads[1] = sum_gx.to(bn_weight.dtype) if ctx.needs_input_grad[1] else None
                grads[2] = sum_g.to(bn_bias.dtype) if ctx.needs_input_grad[2] else None
                if ctx.needs_input_grad[0]:
                    scale = bn_weight.to(acc) * invstd.to(acc)
                    if ctx.batch_stats:  # the batch statistics depend on x as well
                        m = x.shape[0]
                        grad_y = grad_y - sum_g / m - xhat * (sum_gx / m)
                    grads[0] = (grad_y * scale).to(x.dtype)
        return tuple(grads)


def _bn_apply(x, weight, bias, mean, invstd, acc):
    return (x.to(acc) - mean.to(acc)) * (weight.to(acc) * invstd.to(acc)) + bias.to(acc)


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
