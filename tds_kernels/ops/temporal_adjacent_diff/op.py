"""torch.library wiring of the temporal adjacent difference: fake kernels and autograd.

* ``tds::temporal_adjacent_diff`` / ``..._backward``: schemas in csrc/registration.cpp, kernels in
  csrc/cpu and csrc/cuda; fake kernels and autograd registered here when the compiled extension is loaded.
* ``tds_triton::temporal_adjacent_diff`` / ``..._backward``: the Triton launchers (triton.py) as custom ops.

Without ``absolute`` the op is linear: autograd saves nothing and the backward op (the transpose) has the
forward op as its gradient. With ``absolute`` autograd saves x; the backward is linear in grad_out with
gradient ``sign(D x) * D v`` (D the plain difference), and zero almost everywhere in x.
"""
from __future__ import annotations

import torch

from ... import _ext


def _fake(x: torch.Tensor, absolute: bool, offset: int) -> torch.Tensor:
    return x.new_empty(x.shape)  # the kernels return a fresh contiguous tensor


def _fake_backward(grad_out: torch.Tensor, x, absolute: bool, offset: int) -> torch.Tensor:
    return grad_out.new_empty(grad_out.shape)


def _setup(ctx, inputs, output):
    x, absolute, offset = inputs
    ctx.absolute, ctx.offset = absolute, offset
    ctx.save_for_backward(x if absolute else None)


def _setup_backward(ctx, inputs, output):
    _grad, x, absolute, offset = inputs
    ctx.absolute, ctx.offset = absolute, offset
    ctx.save_for_backward(x if absolute else None)


def _make_autograd(forward, backward):
    """(autograd of the forward op, autograd of the backward op) for one family of ops."""

    def fwd_grad(ctx, grad):
        (x,) = ctx.saved_tensors
        return backward(grad, x, ctx.absolute, ctx.offset), None, None

    def bwd_grad(ctx, grad):
        (x,) = ctx.saved_tensors
        dgrad = forward(grad, False, ctx.offset)
        if ctx.absolute:
            dgrad = dgrad * forward(x, False, ctx.offset).sign()
        return dgrad, None, None, None

    return fwd_grad, bwd_grad


# ---- C++ / CUDA extension ops (tds::) ------------------------------------------------------------

# hasattr: an extension built before this op was added loads without its schema (rebuild to get the op)
if _ext.has_extension() and hasattr(torch.ops.tds, "temporal_adjacent_diff"):
    torch.library.register_fake("tds::temporal_adjacent_diff")(_fake)
    torch.library.register_fake("tds::temporal_adjacent_diff_backward")(_fake_backward)
    _tds_fwd_grad, _tds_bwd_grad = _make_autograd(
        lambda x, a, o: torch.ops.tds.temporal_adjacent_diff(x, a, o),
        lambda g, x, a, o: torch.ops.tds.temporal_adjacent_diff_backward(g, x, a, o))
    torch.library.register_autograd("tds::temporal_adjacent_diff", _tds_fwd_grad, setup_context=_setup)
    torch.library.register_autograd("tds::temporal_adjacent_diff_backward", _tds_bwd_grad,
                                    setup_context=_setup_backward)


def run_extension(x: torch.Tensor, absolute: bool, offset: int) -> torch.Tensor:
    """The "cpu" and "cuda" backends: the dispatcher picks the kernel from x's device."""
    return torch.ops.tds.temporal_adjacent_diff(x, absolute, offset)


# ---- Triton ops (tds_triton::) -------------------------------------------------------------------

@torch.library.custom_op("tds_triton::temporal_adjacent_diff", mutates_args=())
def triton_temporal_adjacent_diff(x: torch.Tensor, absolute: bool, offset: int) -> torch.Tensor:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x.contiguous(), absolute, offset)


@torch.library.custom_op("tds_triton::temporal_adjacent_diff_backward", mutates_args=())
def triton_temporal_adjacent_diff_backward(grad_out: torch.Tensor, x: torch.Tensor | None, absolute: bool,
                                           offset: int) -> torch.Tensor:
    from . import triton as kernels

    return kernels.backward(grad_out.contiguous(), None if x is None else x.contiguous(), absolute, offset)


triton_temporal_adjacent_diff.register_fake(_fake)
triton_temporal_adjacent_diff_backward.register_fake(_fake_backward)
_tt_fwd_grad, _tt_bwd_grad = _make_autograd(triton_temporal_adjacent_diff, triton_temporal_adjacent_diff_backward)
triton_temporal_adjacent_diff.register_autograd(_tt_fwd_grad, setup_context=_setup)
triton_temporal_adjacent_diff_backward.register_autograd(_tt_bwd_grad, setup_context=_setup_backward)


def run_triton(x: torch.Tensor, absolute: bool, offset: int) -> torch.Tensor:
    return triton_temporal_adjacent_diff(x, absolute, offset)
