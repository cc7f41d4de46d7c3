"""torch.library wiring of the temporal max-difference: fake kernels and autograd.

* ``tds::temporal_max_diff`` / ``tds::temporal_max_diff_backward``: schemas in csrc/registration.cpp,
  kernels in csrc/cpu and csrc/cuda; their fake kernels and autograd are registered here, only when
  the compiled extension is loaded.
* ``tds_triton::temporal_max_diff`` / ``..._backward``: Triton launchers (triton.py) as custom ops.

Autograd saves only x (no pooled tensor, no int64 argmax): backward recomputes each window's argmax.
Double backward is not implemented (the backward op raises if differentiated) rather than silently
returning zeros.
"""
from __future__ import annotations

import torch

from ... import _ext


def _fake(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    # The kernels make x contiguous and return a fresh contiguous tensor.
    return x.new_empty(x.shape)


def _fake_backward(grad_out: torch.Tensor, x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    return x.new_empty(x.shape)


def _setup_context(ctx, inputs, output):
    x, kernel_size, mix = inputs
    ctx.save_for_backward(x)
    ctx.kernel_size, ctx.mix = kernel_size, mix


def _no_double_backward(ctx, grad):
    raise NotImplementedError("tds_kernels.temporal_max_diff: double backward is not implemented")


def _setup_nothing(ctx, inputs, output):
    pass


# ---- C++ / CUDA extension ops (tds::) ------------------------------------------------------------

def _tds_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.tds.temporal_max_diff_backward(grad.contiguous(), x, ctx.kernel_size, ctx.mix), None, None


if _ext.has_extension():
    torch.library.register_fake("tds::temporal_max_diff")(_fake)
    torch.library.register_fake("tds::temporal_max_diff_backward")(_fake_backward)
    torch.library.register_autograd("tds::temporal_max_diff", _tds_backward, setup_context=_setup_context)
    torch.library.register_autograd("tds::temporal_max_diff_backward", _no_double_backward,
                                    setup_context=_setup_nothing)


def run_extension(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    """The "cpu" and "cuda" backends: the dispatcher picks the kernel from x's device."""
    return torch.ops.tds.temporal_max_diff(x, kernel_size, mix)


# ---- Triton ops (tds_triton::) -------------------------------------------------------------------

@torch.library.custom_op("tds_triton::temporal_max_diff", mutates_args=())
def triton_temporal_max_diff(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x.contiguous(), kernel_size, mix)


@torch.library.custom_op("tds_triton::temporal_max_diff_backward", mutates_args=())
def triton_temporal_max_diff_backward(grad_out: torch.Tensor, x: torch.Tensor, kernel_size: int,
                                      mix: bool) -> torch.Tensor:
    from . import triton as kernels

    return kernels.backward(grad_out.contiguous(), x.contiguous(), kernel_size, mix)


def _triton_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return triton_temporal_max_diff_backward(grad, x, ctx.kernel_size, ctx.mix), None, None


triton_temporal_max_diff.register_fake(_fake)
triton_temporal_max_diff_backward.register_fake(_fake_backward)
triton_temporal_max_diff.register_autograd(_triton_backward, setup_context=_setup_context)
triton_temporal_max_diff_backward.register_autograd(_no_double_backward, setup_context=_setup_nothing)


def run_triton(x: torch.Tensor, kernel_size: int, mix: bool) -> torch.Tensor:
    return triton_temporal_max_diff(x, kernel_size, mix)
