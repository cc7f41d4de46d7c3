"""torch.library wiring of the fused BN → Linear → GELU → Linear op (through tds_kernels/ops/_wiring.py).

* ``tds::bn_mlp_forward`` / ``_backward``: the compiled kernels (csrc/cpu/bn_mlp.cpp, csrc/cuda/bn_mlp.cpp).
* ``tds_triton::bn_mlp_forward`` / ``_backward``: the Triton launchers (triton.py) as custom ops.

Autograd saves x, the parameters and the two (d,) statistics: no hidden activation. The mean and
variance outputs carry no gradient (they feed the running-statistics update only). Double backward
is not implemented (the backward op raises if differentiated).
"""
from __future__ import annotations

import torch

from .._wiring import wire_library


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake_forward(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps):
    d = x.shape[1]
    return (x.new_empty((x.shape[0], w2.shape[0]), dtype=w1.dtype), x.new_empty((d,), dtype=_acc(w1.dtype)),
            x.new_empty((d,), dtype=_acc(w1.dtype)))


def _fake_backward(grad_out, x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var, training, eps):
    def like_or_empty(t, ref):
        return t.new_empty(t.shape) if t is not None else ref.new_empty((0,))

    return (x.new_empty(x.shape), bn_weight.new_empty(bn_weight.shape), bn_bias.new_empty(bn_bias.shape),
            w1.new_empty(w1.shape), like_or_empty(b1, w1), w2.new_empty(w2.shape), like_or_empty(b2, w1))


def _setup_context(ctx, inputs, output):
    x, bn_weight, bn_bias, _rm, _rv, w1, b1, w2, b2, training, eps = inputs
    _out, mean, var = output
    ctx.save_for_backward(x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var)
    ctx.training, ctx.eps = training, eps
    ctx.has_b1, ctx.has_b2 = b1 is not None, b2 is not None
    ctx.mark_non_differentiable(mean, var)


def _make_backward(ops):
    def _backward(ctx, grad_out, _grad_mean, _grad_var):
        x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var = ctx.saved_tensors
        if grad_out is None:  # only the statistics were used downstream
            grad_out = x.new_zeros((x.shape[0], w2.shape[0]), dtype=w1.dtype)
        gx, gbw, gbb, gw1, gb1, gw2, gb2 = ops.backward(grad_out.contiguous(), x, bn_weight, bn_bias, w1, b1, w2,
                                                        b2, mean, var, ctx.training, ctx.eps)
        return (gx, gbw, gbb, None, None, gw1, gb1 if ctx.has_b1 else None, gw2, gb2 if ctx.has_b2 else None,
                None, None)

    return _backward


# ---- Triton ops (tds_triton::) -------------------------------------------------------------------

@torch.library.custom_op("tds_triton::bn_mlp_forward", mutates_args=())
def triton_forward(x: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                          running_mean: torch.Tensor, running_var: torch.Tensor, w1: torch.Tensor,
                          b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None, training: bool,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps)


@torch.library.custom_op("tds_triton::bn_mlp_backward", mutates_args=())
def triton_backward(grad_out: torch.Tensor, x: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                           w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None,
                           mean: torch.Tensor, var: torch.Tensor, training: bool, eps: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                      torch.Tensor, torch.Tensor]:
    from . import triton as kernels

    return kernels.backward(grad_out, x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var, training, eps)


for _namespace in ("tds", "tds_triton"):
    wire_library(_namespace, "bn_mlp", fake_forward=_fake_forward, fake_backward=_fake_backward,
                 setup_context=_setup_context, make_backward=_make_backward)
