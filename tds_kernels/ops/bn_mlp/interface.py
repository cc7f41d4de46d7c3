"""Public entry points of the fused side-block MLP: validation, backend dispatch, module glue."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import _dispatch
from ..._bn import update_running_stats, uses_batch_stats
from ...lean import lean_batchnorm_linear, lean_gelu_linear
from .._wiring import register_backends
from . import op  # noqa: F401  (registers fake kernels, autograd and the Triton ops)
from .reference import bn_mlp_reference
from .validate import check

OP = "bn_mlp"
# Every backend takes (x (M, d) contiguous, params..., training, eps) and returns (out (M, O), mean, var).
register_backends(OP, reference=bn_mlp_reference)


def bn_mlp(x: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor, running_mean: torch.Tensor | None,
           running_var: torch.Tensor | None, w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor,
           b2: torch.Tensor | None, training: bool = True, eps: float = 1e-5, backend: str | None = None):
    """The side block's MLP as one memory-lean op: ``out = Linear2(GELU(Linear1(BatchNorm(x))))``.

    BatchNorm normalises each channel over all tokens (BatchNorm3d on the (B, d, T, h, w) view);
    GELU is the exact one. Autograd keeps only ``x`` and the two (d,) statistics: backward recomputes
    the normalised input, the hidden activations and their GELU chunk by chunk (plain autograd keeps
    BN's input and output and both H-wide hidden tensors: 10 d-wide rows per token for H = 4d).

    Args:
        x: tokens (..., d), e.g. (B, T, N, d), channels last; any strides (made contiguous). Its dtype
            is w1's, or float32 with 16-bit weights (the autocast case: BN reads the float32 stream).
        bn_weight, bn_bias: (d,) BatchNorm affine parameters (any float dtype).
        running_mean, running_var: (d,) running statistics, used when ``training`` is False (may be
            None in training).
        w1, b1: Linear d → H, w1 (H, d), b1 (H,) or None.
        w2, b2: Linear H → O, w2 (O, H), b2 (O,) or None. w1, b1, w2, b2 share one dtype: float16,
            bfloat16, float32 or float64; the GEMMs run in it (the CPU kernel computes 16-bit in fp32).
        training: True: normalise with the batch statistics (and differentiate through them);
            False: with the running ones.
        eps: BatchNorm epsilon.
        backend: "cpu", "cuda", "triton", "reference", "auto" or None (automatic, or the
            TDS_KERNELS_BACKEND environment variable); see ``python -m tds_kernels.info``.

    Returns:
        (out, mean, var): out (..., O) in w1's dtype, contiguous; mean and biased var (d,) in float32
        (float64 for float64 weights): the batch statistics in training, copies of the running ones
        in eval. They carry no gradient; update running buffers with them (see :func:`bn_mlp_modules`).
    """
    check(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps)
    d = x.shape[-1]
    if running_mean is None or running_var is None:  # training without running buffers
        running_mean = running_var = x.new_empty((0,), dtype=torch.float32)
    rows = x.reshape(-1, d).contiguous()
    out, mean, var = _dispatch.call(OP, backend, x.device, rows, bn_weight, bn_bias, running_mean, running_var,
                                    w1, b1, w2, b2, training, float(eps))
    return out.view(*x.shape[:-1], w2.shape[0]), mean, var


def _autocast_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except RuntimeError:  # a device type without autocast support
        pass
    return default


def bn_mlp_modules(x: torch.Tensor, norm: nn.modules.batchnorm._BatchNorm, fc1: nn.Linear, fc2: nn.Linear,
                   backend: str | None = None) -> torch.Tensor:
    """``fc2(gelu(fc1(norm(x))))`` with the parameters and buffers of existing modules.

    The drop-in for a side block's MLP: same values, gradients, BatchNorm running-statistics update and
    state_dict as the plain layers, with only x kept for backward. ``norm`` is a BatchNorm over the
    last dim of x (the model's token BatchNorm); in eval mode its running statistics are used. Under
    autocast the linear layers run in the autocast dtype (as nn.Linear would) and BN reads x as is.
    With backend "reference" (or when that is all there is) this is literally the plain layers.
    """
    chosen = _dispatch.resolve(OP, backend, x.device)
    if chosen == "reference":
        return fc2(F.gelu(fc1(norm(x))))
    compute = _autocast_dtype(x.device.type, fc1.weight.dtype)
    cast = (lambda t: None if t is None else t.to(compute))
    xin = x if x.dtype in (compute, torch.float32) else x.to(compute)
    d = x.shape[-1]
    weight = norm.weight if norm.weight is not None else torch.ones(d, device=x.device)
    bias = norm.bias if norm.bias is not None else torch.zeros(d, device=x.device)
    training = uses_batch_stats(norm)
    # (custom ops are not rewritten by autocast: the casts above are what autocast would do to nn.Linear)
    out, mean, var = bn_mlp(xin, weight, bias, norm.running_mean, norm.running_var, cast(fc1.weight), cast(fc1.bias),
                            cast(fc2.weight), cast(fc2.bias), training=training, eps=norm.eps, backend=chosen)
    if training:
        update_running_stats(norm, mean, var, x.numel() // d)
    return out


def side_mlp(x: torch.Tensor, norm: nn.modules.batchnorm._BatchNorm, fc1: nn.Linear, fc2: nn.Linear,
             backend: str | None = None) -> torch.Tensor:
    """The side block's MLP ``fc2(gelu(fc1(norm(x))))``: the one place that chooses how it runs.

    * ``backend="reference"``: the plain layers (what the reference model computes, kept for parity);
    * a fused backend resolves (``None``: the best one here, or TDS_KERNELS_BACKEND): :func:`bn_mlp_modules`,
      keeping only x for backward;
    * the automatic choice falls back to the reference (no kernel for this device): the memory-lean autograd
      functions of :mod:`tds_kernels.lean` (x and the hidden tensor kept), the same values and gradients.

    Parameters, buffers (running-statistics update included) and state_dict are the modules' in every case.
    """
    if backend == "reference":
        return fc2(F.gelu(fc1(norm(x))))
    if _dispatch.resolve(OP, backend, x.device, warn=False) != "reference":
        return bn_mlp_modules(x, norm, fc1, fc2, backend=backend)
    return lean_gelu_linear(lean_batchnorm_linear(x, norm, fc1.weight, fc1.bias), fc2)
