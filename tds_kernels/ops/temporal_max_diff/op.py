"""torch.library wiring of the temporal max-difference (through tds_kernels/ops/_wiring.py).

* ``tds::temporal_max_diff_forward`` / ``_backward``: the compiled kernels (csrc/cpu, csrc/cuda).
* ``tds_triton::temporal_max_diff_forward`` / ``_backward``: the Triton launchers (triton.py).

Autograd saves only x (no pooled tensor, no int64 argmax): backward recomputes each window's argmax.
Double backward is not implemented (the backward op raises if differentiated) rather than silently
returning zeros.
"""
from __future__ import annotations

import torch

from .._wiring import wire_library


def _fake_forward(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    return x.new_empty(x.shape)  # the kernels return a fresh contiguous tensor


def _fake_backward(grad_out: torch.Tensor, x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    return x.new_empty(x.shape)


def _setup_context(ctx, inputs, output):
    x, kernel_size, mix = inputs
    ctx.save_for_backward(x)
    ctx.kernel_size, ctx.mix = kernel_size, mix


def _make_backward(ops):
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ops.backward(grad.contiguous(), x, ctx.kernel_size, ctx.mix), None, None
    return backward


@torch.library.custom_op("tds_triton::temporal_max_diff_forward", mutates_args=())
def triton_forward(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x.contiguous(), kernel_size, mix)


@torch.library.custom_op("tds_triton::temporal_max_diff_backward", mutates_args=())
def triton_backward(grad_out: torch.Tensor, x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    from . import triton as kernels

    return kernels.backward(grad_out.contiguous(), x.contiguous(), kernel_size, mix)


for _namespace in ("tds", "tds_triton"):
    wire_library(_namespace, "temporal_max_diff", fake_forward=_fake_forward, fake_backward=_fake_backward,
                 setup_context=_setup_context, make_backward=_make_backward)
