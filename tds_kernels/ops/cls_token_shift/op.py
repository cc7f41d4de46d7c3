"""torch.library wiring of the CLS token shift (through tds_kernels/ops/_wiring.py).

* ``tds::cls_token_shift_forward`` / ``_backward``: the compiled kernels (csrc/cpu, csrc/cuda).
* ``tds_triton::cls_token_shift_forward`` / ``_backward``: the Triton launchers (triton.py).

Both ops are linear and each is the other's transpose, so autograd saves nothing and double
backward works (the backward op's gradient is the forward op).
"""
from __future__ import annotations

import torch

from .._wiring import wire_library


def _fake(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape)  # the kernels return a fresh contiguous tensor


def _setup_nothing(ctx, inputs, output):
    pass


def _make_backward(ops):
    return lambda ctx, grad: ops.backward(grad)


def _make_double_backward(ops):
    return lambda ctx, grad: ops.forward(grad)


@torch.library.custom_op("tds_triton::cls_token_shift_forward", mutates_args=())
def triton_forward(x: torch.Tensor) -> torch.Tensor:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x.contiguous())


@torch.library.custom_op("tds_triton::cls_token_shift_backward", mutates_args=())
def triton_backward(grad_out: torch.Tensor) -> torch.Tensor:
    from . import triton as kernels

    return kernels.backward(grad_out.contiguous())


for _namespace in ("tds", "tds_triton"):
    wire_library(_namespace, "cls_token_shift", fake_forward=_fake, fake_backward=_fake,
                 setup_context=_setup_nothing, make_backward=_make_backward,
                 make_double_backward=_make_double_backward)
