"""Argument rules shared by the validation of several ops (each op's validate.py), so that every op with a
BatchNorm inside rejects what ``nn.BatchNorm`` / ``F.batch_norm`` reject, with the same words, and the temporal
ops check their token tensor alike."""
from __future__ import annotations

import math

import torch


def batch_norm_args(op: str, *, training: bool, eps, count: int, running: dict) -> None:
    """eps, the number of values per channel and the running statistics of a BatchNorm inside ``op``.

    * eps must be a positive finite number (F.batch_norm raises for eps = 0 in training; a fused kernel
      would divide by zero on a constant channel and return NaN).
    * training normalises with the batch statistics: more than one value per channel (``count``), as
      F.batch_norm demands (a fused kernel would return zeros).
    * running statistics are buffers and get no gradient: one that requires grad is an error (autograd
      raises for F.batch_norm; a fused kernel would silently leave its .grad None).
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not eps > 0:
        raise ValueError(f"{op}: eps must be a positive number (BatchNorm divides by sqrt(var + eps)), got {eps!r}")
    if training and count <= 1:
        raise ValueError(f"{op}: training-mode BatchNorm needs more than one value per channel, got {count} "
                         "(F.batch_norm raises the same)")
    for name, t in running.items():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(f"{op}: {name} requires grad, but BatchNorm running statistics are buffers and get no "
                             f"gradient; pass {name}.detach()")


def module_input_dtype(module: str, name: str, x: torch.Tensor, param_dtype: torch.dtype,
                       allow_16bit_on_fp32: bool) -> None:
    """The dtype rule of a fused module's input: the module's own dtype, or (allow_16bit_on_fp32) a
    16-bit input on a float32 module, which the fused kernels compute in float32 (the mixed-precision
    case); under autocast, also the autocast dtype (what autocast makes of the layers before)."""
    if x.dtype == param_dtype:
        return
    if allow_16bit_on_fp32 and param_dtype == torch.float32 and x.dtype in (torch.float16, torch.bfloat16):
        return
    dev = x.device.type
    if torch.is_autocast_enabled(dev) and x.dtype == torch.get_autocast_dtype(dev):
        return
    extra = " or float16/bfloat16 on a float32 module" if allow_16bit_on_fp32 else ""
    raise TypeError(f"{module}: {name} has dtype {x.dtype} but the module's parameters are {param_dtype}; pass "
                    f"{name} in the module's dtype{extra} (or convert the module with .to(dtype))")


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def frame_tokens(op: str, x, layout: str = "(B, T, N, C)") -> None:
    """The token tensor of the temporal ops: a floating tensor of ``layout`` (frames on dim 1), no empty dim."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    ndim = layout.count(",") + 1
    if x.dim() != ndim:
        raise ValueError(f"{op}: x must be {ndim}-D {layout} with frames on dim 1, got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: x has dtype {x.dtype}; supported: float16, bfloat16, float32, float64")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{op}: x has a zero-size dimension, shape {tuple(x.shape)} {layout}")
