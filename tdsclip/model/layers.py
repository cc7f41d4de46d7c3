"""Small building blocks of the side network, all on the token layout ``(B, T, N, d)`` (channels
last) that the tds_kernels ops use, so no permute / copy is needed between them.

* :class:`TokenBatchNorm` — ``BatchNorm3d`` over the ``(B, d, T, h, w)`` view, computed on tokens.
* :func:`temporal_dwconv` — the depthwise ``Conv3d(d, d, (3,1,1), padding (1,0,0), groups=d)``.
* :func:`pointwise` — a ``Conv3d(d_in, d_out, 1)`` as the matrix product it is.
* :func:`lean_layernorm_linear` / :func:`lean_batchnorm_linear` / :func:`lean_gelu_linear` —
  memory-lean forms of ``Linear(LayerNorm(x))`` for a frozen input, ``Linear(BatchNorm(x))`` and
  ``Linear(GELU(h))``: same values and gradients, but each keeps one activation for backward
  instead of two (used with ``fused_ops=True``).
* :class:`DropPath` and :func:`checkpoint_side_block` (activation checkpointing that does not
  update BatchNorm running statistics twice).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class TokenBatchNorm(nn.BatchNorm3d):
    """``BatchNorm3d(d)`` applied to tokens ``(..., d)``.

    BatchNorm3d on ``(B, d, T, h, w)`` normalises each channel over all B·T·h·w positions; on tokens
    that is exactly a batch norm of the ``(B·T·N, d)`` matrix, with the same parameters, buffers,
    running-statistics update and state_dict keys. On the GPU it is computed on that matrix (no
    transpose). On the CPU the matrix is handed to the kernel as the ``(1, d, B·T·N)`` view that the
    published ``(B, d, T, h, w)`` layout is: PyTorch's CPU kernels reduce an ``(M, d)`` input row by row
    in float32 and lose ~10× more accuracy in training (gradients 1.7e-6 vs 1.4e-7 relative to float64
    for 4×8×196 tokens × 320, docs/model.md §7) than on the channel-first layout, whose reductions are
    pairwise. The view costs a transposed copy inside the kernel; CPU is not the speed path.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3):
            raise ValueError(f"TokenBatchNorm: expected tokens (..., {self.num_features}), got {tuple(input.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"TokenBatchNorm: last dim must be {self.num_features}, got {tuple(x.shape)}")
        rows = x.reshape(-1, self.num_features)
        if x.device.type == "cpu":
            return super().forward(rows.t().unsqueeze(0)).squeeze(0).t().contiguous().view(x.shape)
        return super().forward(rows).view(x.shape)


def pointwise(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """A 1×1×1 ``Conv3d`` on tokens (..., d_in) → (..., d_out): the same product, no layout change."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def temporal_dwconv(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv`` = ``Conv3d(d, d, (3, 1, 1), padding=(1, 0, 0), groups=d)`` on tokens (B, T, N, d):
    ``out[t] = w0·x[t-1] + w1·x[t] + w2·x[t+1] + b`` per channel, zero padding in T."""
    d = x.shape[-1]
    # Under autocast a Conv3d would run in the autocast dtype; the elementwise form would promote to
    # the fp32 weight, so compute in x's dtype (a no-op cast without autocast).
    w = conv.weight.view(d, 3).to(x.dtype)
    xp = F.pad(x, (0, 0, 0, 0, 1, 1))  # zero frame before the first and after the last
    out = xp[:, :-2] * w[:, 0] + xp[:, 1:-1] * w[:, 1] + xp[:, 2:] * w[:, 2]
    if conv.bias is not None:
        out = out + conv.bias.to(x.dtype)
    return out


class DropPath(nn.Module):
    """Stochastic depth per clip (dim 0) on a residual branch; identity when p = 0 or in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


# ---------------------------------------------------------------------------------------------
# memory-lean autograd functions


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
    from tds_kernels._bn import update_running_stats, uses_batch_stats

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


# ---------------------------------------------------------------------------------------------
# activation checkpointing

# Callables told the tensors each checkpointed call keeps alive until backward (its inputs): the
# activation-memory accounting in tdsclip.model.summary uses it, since checkpoint keeps them outside
# any saved-tensor hook.
CHECKPOINT_INPUT_OBSERVERS: list = []


class _RestoreBatchNormStats:
    """Re-running a block in backward must not update BatchNorm running statistics a second time:
    snapshot them before the recomputation and put them back after it."""

    def __init__(self, module: nn.Module):
        self.buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                        for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        self.saved = []

    def __enter__(self):
        self.saved = [b.detach().clone() for b in self.buffers]
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for b, s in zip(self.buffers, self.saved):
                b.copy_(s)
        self.saved = []
        return False


def checkpoint_side_block(fn, module: nn.Module, *args):
    """``fn(*args)`` under ``torch.utils.checkpoint`` (``use_reentrant=False``): its activations are
    recomputed in backward instead of kept; BatchNorm statistics in ``module`` are updated once."""
    for observe in CHECKPOINT_INPUT_OBSERVERS:
        observe([a for a in args if isinstance(a, torch.Tensor)])

    def contexts():
        return contextlib.nullcontext(), _RestoreBatchNormStats(module)

    return checkpoint(fn, *args, use_reentrant=False, context_fn=contexts)
