"""torch.library wiring of the fused TD-Adapter (docs/model.md §4 op 2; through tds_kernels/ops/_wiring.py).

* ``tds::td_adapter_forward`` / ``_backward``: the compiled kernels (csrc/cpu, csrc/cuda).
* ``tds_triton::td_adapter_forward`` / ``_backward``: the Triton kernels (``triton.py``) as custom ops
  with the same signatures.

Autograd saves u (which the caller holds anyway), the weights and the per-channel statistics: no
intermediate. Backward recomputes the narrow tensors and the expand. Only ``out`` is differentiable;
the returned statistics are marked non-differentiable.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._wiring import wire_library

# Inputs of the forward op after u: w_down, w_up, gamma1, beta1, gamma2, beta2, 4 running stats.
_N_TENSOR_INPUTS = 11


def _acc_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _fake_forward(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
                  running_var2, training, eps, kernel_size, mix, gated):
    h, d = w_down.shape
    acc = _acc_dtype(u)
    out = u.new_empty(u.shape)  # contiguous, like the kernels' output
    return (out, u.new_empty((h,), dtype=acc), u.new_empty((h,), dtype=acc), u.new_empty((d,), dtype=acc),
            u.new_empty((d,), dtype=acc))


def _fake_backward(grad_out, u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2, training,
                   eps, kernel_size, mix, gated):
    return (u.new_empty(u.shape), torch.empty_like(w_down, memory_format=torch.contiguous_format),
            torch.empty_like(w_up, memory_format=torch.contiguous_format), torch.empty_like(gamma1),
            torch.empty_like(beta1), torch.empty_like(gamma2), torch.empty_like(beta2))


def _setup_context(ctx, inputs, output):
    (u, w_down, w_up, gamma1, beta1, gamma2, beta2, _rm1, _rv1, _rm2, _rv2, training, eps, kernel_size, mix,
     gated) = inputs
    _out, mean1, var1, mean2, var2 = output
    ctx.save_for_backward(u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2)
    ctx.args = (training, eps, kernel_size, mix, gated)
    ctx.mark_non_differentiable(mean1, var1, mean2, var2)


def _make_backward(ops):
    def _backward(ctx, grad_out, _gm1, _gv1, _gm2, _gv2):
        saved = ctx.saved_tensors
        if grad_out is None:  # only the statistics were used: nothing flows back
            return (None,) * (_N_TENSOR_INPUTS + 5)
        grads = ops.backward(grad_out.contiguous(), *saved, *ctx.args)
        needs = ctx.needs_input_grad
        # inputs: u, w_down, w_up, gamma1, beta1, gamma2, beta2, 4 running stats, 5 non-tensors
        return tuple(g if needs[i] else None for i, g in enumerate(grads)) + (None,) * 9
    return _backward


# ------------------------------------------------------------------------------------------ Triton
@torch.library.custom_op("tds_triton::td_adapter_forward", mutates_args=())
def triton_forward(u: Tensor, w_down: Tensor, w_up: Tensor, gamma1: Tensor, beta1: Tensor,
                              gamma2: Tensor, beta2: Tensor, running_mean1: Tensor, running_var1: Tensor,
                              running_mean2: Tensor, running_var2: Tensor, training: bool, eps: float,
                              kernel_size: int, mix: bool, gated: bool
                              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from . import triton as _tk  # imported lazily: triton is optional

    return _tk.forward(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1,
                       running_mean2, running_var2, training, eps, kernel_size, mix, gated)


@torch.library.custom_op("tds_triton::td_adapter_backward", mutates_args=())
def triton_backward(grad_out: Tensor, u: Tensor, w_down: Tensor, w_up: Tensor, gamma1: Tensor,
                               beta1: Tensor, gamma2: Tensor, beta2: Tensor, mean1: Tensor, var1: Tensor,
                               mean2: Tensor, var2: Tensor, training: bool, eps: float, kernel_size: int,
                               mix: bool, gated: bool
                               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from . import triton as _tk

    return _tk.backward(grad_out, u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2,
                        training, eps, kernel_size, mix, gated)


for _namespace in ("tds", "tds_triton"):
    wire_library(_namespace, "td_adapter", fake_forward=_fake_forward, fake_backward=_fake_backward,
                 setup_context=_setup_context, make_backward=_make_backward)
