"""torch.library wiring of the temporal adjacent difference (through tds_kernels/ops/_wiring.py).

* ``tds::temporal_adjacent_diff_forward`` / ``_backward``: the compiled kernels (csrc/cpu, csrc/cuda).
* ``tds_triton::temporal_adjacent_diff_forward`` / ``_backward``: the Triton launchers (triton.py).

Without ``absolute`` the op is linear: autograd saves nothing, and the backward op (the transpose) has the
forward op as its gradient. With ``absolute`` autograd saves x, the one input the gradient
``sign(D x) * g`` (D the plain difference) needs; the backward op is linear in grad_out with gradient
``sign(D x) * D v`` and zero almost everywhere in x, so double backward saves x too.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._wiring import wire_library


def _fake(x: torch.Tensor, absolute: bool, direction: str) -> torch.Tensor:
    return x.new_empty(x.shape)  # the kernels return a fresh contiguous tensor


def _fake_backward(grad_out: torch.Tensor, x, absolute: bool, direction: str) -> torch.Tensor:
    return grad_out.new_empty(grad_out.shape)


def _setup(ctx, inputs, output):
    x, absolute, direction = inputs
    ctx.absolute, ctx.direction = absolute, direction
    ctx.save_for_backward(x if absolute else None)


def _setup_double(ctx, inputs, output):
    _grad, x, absolute, direction = inputs
    ctx.absolute, ctx.direction = absolute, direction
    ctx.save_for_backward(x if absolute else None)


def _make_backward(ops):
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ops.backward(grad, x, ctx.absolute, ctx.direction), None, None
    return backward


def _make_double_backward(ops):
    def double_backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dgrad = ops.forward(grad, False, ctx.direction)
        if ctx.absolute:
            dgrad = dgrad * ops.forward(x, False, ctx.direction).sign()
        return dgrad, None, None, None
    return double_backward


@torch.library.custom_op("tds_triton::temporal_adjacent_diff_forward", mutates_args=())
def triton_forward(x: torch.Tensor, absolute: bool, direction: str) -> torch.Tensor:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x.contiguous(), absolute, direction)


@torch.library.custom_op("tds_triton::temporal_adjacent_diff_backward", mutates_args=())
def triton_backward(grad_out: torch.Tensor, x: Optional[torch.Tensor], absolute: bool,
                    direction: str) -> torch.Tensor:
    from . import triton as kernels

    return kernels.backward(grad_out.contiguous(), None if x is None else x.contiguous(), absolute, direction)


for _namespace in ("tds", "tds_triton"):
    wire_library(_namespace, "temporal_adjacent_diff", fake_forward=_fake, fake_backward=_fake_backward,
                 setup_context=_setup, make_backward=_make_backward, make_double_backward=_make_double_backward,
                 setup_double_backward=_setup_double)
