"""torch.library wiring of the fused BN → Linear → GELU → Linear op: fake kernels and autograd.

* ``tds::bn_mlp_forward`` / ``tds::bn_mlp_backward``: schemas in csrc/registration.cpp, kernels in
  csrc/cpu/bn_mlp.cpp and csrc/cuda/bn_mlp.cpp; fake kernels and autograd registered here when the
  compiled extension is loaded.
* ``tds_triton::bn_mlp_forward`` / ``..._backward``: the Triton launchers (triton.py) as custom ops.

Autograd saves x, the parameters and the two (d,) statistics: no hidden activation. The mean and
variance outputs carry no gradient (they feed the running-statistics update only). Double backward
is not implemented (the backward op raises if differentiated).
"""
from __future__ import annotations

import torch

from ... import _autocast, _ext

_AUTOCAST_LIBS: dict = {}  # keeps the Library objects (and so their registrations) alive


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


def _make_backward(backward_op):
    def _backward(ctx, grad_out, _grad_mean, _grad_var):
        x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var = ctx.saved_tensors
        if grad_out is None:  # only the statistics were used downstream
            grad_out = x.new_zeros((x.shape[0], w2.shape[0]), dtype=w1.dtype)
        gx, gbw, gbb, gw1, gb1, gw2, gb2 = backward_op(grad_out.contiguous(), x, bn_weight, bn_bias, w1, b1, w2, b2,
                                                       mean, var, ctx.training, ctx.eps)
        return (gx, gbw, gbb, None, None, gw1, gb1 if ctx.has_b1 else None, gw2, gb2 if ctx.has_b2 else None,
                None, None)

    return _backward


def _no_double_backward(ctx, *grads):
    raise NotImplementedError("tds_kernels.bn_mlp: double backward is not implemented")


def _setup_nothing(ctx, inputs, output):
    pass


# ---- C++ / CUDA extension ops (tds::) ------------------------------------------------------------

if _ext.has_extension():
    torch.library.register_fake("tds::bn_mlp_forward")(_fake_forward)
    torch.library.register_fake("tds::bn_mlp_backward")(_fake_backward)
    torch.library.register_autograd("tds::bn_mlp_forward",
                                    _make_backward(lambda *a: torch.ops.tds.bn_mlp_backward(*a)),
                                    setup_context=_setup_context)
    torch.library.register_autograd("tds::bn_mlp_backward", _no_double_backward, setup_context=_setup_nothing)


def run_extension(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps):
    """The "cpu" and "cuda" backends: the dispatcher picks the kernel from x's device."""
    return torch.ops.tds.bn_mlp_forward(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2,
                                        training, eps)


# ---- Triton ops (tds_triton::) -------------------------------------------------------------------

@torch.library.custom_op("tds_triton::bn_mlp_forward", mutates_args=())
def triton_bn_mlp_forward(x: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                          running_mean: torch.Tensor, running_var: torch.Tensor, w1: torch.Tensor,
                          b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None, training: bool,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from . import triton as kernels  # triton is imported only when a Triton op runs

    return kernels.forward(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps)


@torch.library.custom_op("tds_triton::bn_mlp_backward", mutates_args=())
def triton_bn_mlp_backward(grad_out: torch.Tensor, x: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                           w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None,
                           mean: torch.Tensor, var: torch.Tensor, training: bool, eps: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                      torch.Tensor, torch.Tensor]:
    from . import triton as kernels

    return kernels.backward(grad_out, x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var, training, eps)


triton_bn_mlp_forward.register_fake(_fake_forward)
triton_bn_mlp_backward.register_fake(_fake_backward)
triton_bn_mlp_forward.register_autograd(_make_backward(lambda *a: triton_bn_mlp_backward(*a)),
                                        setup_context=_setup_context)
triton_bn_mlp_backward.register_autograd(_no_double_backward, setup_context=_setup_nothing)


def run_triton(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps):
    return triton_bn_mlp_forward(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps)


# Autocast pass-through (see tds_kernels/_autocast.py): the ops run their GEMMs in the dtype of the
# weights they are given (bn_mlp_modules casts them as autocast would), so autocast must not re-cast
# the ATen matmuls inside the kernels. Registered here too so that it holds however this module is
# imported; tds_kernels/__init__ skips ops that already have the kernel.
for _ns in ("tds", "tds_triton"):
    if _ns == "tds" and not _ext.has_extension():
        continue
    _ops = getattr(torch.ops, _ns)
    for _name in ("bn_mlp_forward", "bn_mlp_backward"):
        if not hasattr(_ops, _name):
            continue
        _op = getattr(_ops, _name).default
        for _key in ("AutocastCPU", "AutocastCUDA"):
            if not _op.has_kernel_for_dispatch_key(getattr(torch._C.DispatchKey, _key)):
                _autocast_lib = _AUTOCAST_LIBS.setdefault(_ns, torch.library.Library(_ns, "IMPL"))
                _autocast_lib.impl(_name, _autocast._passthrough(_op, getattr(torch._C.DispatchKey, _key)), _key,
                                   with_keyset=True)
