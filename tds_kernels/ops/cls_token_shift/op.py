"""torch.library wiring of the CLS token shift: fake kernels and autograd.

* ``tds::cls_token_shift`` / ``tds::cls_token_shift_backward``: schemas in csrc/registration.cpp,
  kernels in csrc/cpu and csrc/cuda; fake kernels and autograd registered here when the compiled
  extension is loaded.
* ``tds_triton::cls_token_shift`` / ``..._backward``: the Triton launchers (triton.py) as custom ops.

Both ops are linear and each is the other's transpose, so autograd saves nothing and double
backward works (the backward op's gradient is the forward op).
"""
from __future__ import annotations

import torch

from ... import _ext


def _fake(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape)  # the kernels return a fresh contiguous tensor


def _setup_nothing(ctx, inputs, output):
    pass


# ---- C++ / CUDA extension ops (tds::) ------------------------------------------------------------

def _tds_backward(ctx, grad):
    return torch.ops.tds.cls_token_shift_backward(grad)


def _tds_double_backward(ctx, grad):
    return torch.ops.tds.cls_token_shift(grad)


if _ext.has_extension():
    torch.library.register_fake("tds::cls_token_shift")(_fake)
    torch.library.register_fake("tds::cls_token_shift_backward")(_fake)
    torch.library.register_autograd("tds::cls_token_shift", _tds_backward, setup_context=_setup_nothing)
    torch.library.register_autograd("tds::cls_token_shift_backward", _tds_double_backward,
                                    setup_context=_setup_nothing)


def run_extension(x: torch.Tensor) -> torch.Tensor:
    """The "cpu" and "cuda" backends: the dispatcher picks the kernel from x's device."""
    return torch.ops.tds.cls_token_shift(x)


# ---- Triton ops (tds_triton::) -------------------------------------------------------------------

@torch.library.custom_op("tds_triton::cls_token_shift", mutates_args=())
def triton_cls_token_shift(x: torch.Tensor) -> torch.Tensor:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x.contiguous())


@torch.library.custom_op("tds_triton::cls_token_shift_backward", mutates_args=())
def triton_cls_token_shift_backward(grad_out: torch.Tensor) -> torch.Tensor:
    from . import triton as kernels

    return kernels.backward(grad_out.contiguous())


triton_cls_token_shift.register_fake(_fake)
triton_cls_token_shift_backward.register_fake(_fake)
triton_cls_token_shift.register_autograd(lambda ctx, grad: triton_cls_token_shift_backward(grad),
                                         setup_context=_setup_nothing)
triton_cls_token_shift_backward.register_autograd(lambda ctx, grad: triton_cls_token_shift(grad),
                                                  setup_context=_setup_nothing)


def run_triton(x: torch.Tensor) -> torch.Tensor:
    return triton_cls_token_shift(x)
