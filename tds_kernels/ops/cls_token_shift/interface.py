"""Public entry point of the CLS token shift: validation and backend dispatch."""
from __future__ import annotations

import torch

from ... import _dispatch
from . import op
from .reference import cls_token_shift_reference

OP = "cls_token_shift"
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Every backend takes a contiguous x. "cpu" and "cuda" are the same extension op (routed by device).
for _name, _fn in {"reference": cls_token_shift_reference, "cpu": op.run_extension, "cuda": op.run_extension,
                   "triton": op.run_triton}.items():
    _dispatch.register(OP, _name, _fn)


def _validate(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"cls_token_shift: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"cls_token_shift: x must be 3-D (B, T, C) with frames on dim 1, got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise TypeError(f"cls_token_shift: x has dtype {x.dtype}; supported: float16, bfloat16, float32, float64")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"cls_token_shift: x has a zero-size dimension, shape {tuple(x.shape)} (B, T, C)")


def cls_token_shift(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Temporal shift of the CLS token (SPEC §3 side block step 2, §4 op 4).

    With ``fold = C // 2``: output channels ``[:fold]`` take frame ``t+1``, channels ``[fold:]`` take
    frame ``t-1``, zeros past either end of the clip. Backward is the opposite shift.

    Args:
        x: (B, T, C) — B clips, T frames (dim 1), C channels (last).
            float16, bfloat16, float32 or float64, on CPU or CUDA; any strides (made contiguous).
        backend: "cpu", "cuda", "triton", "reference", "auto" or None (automatic, or the
            TDS_KERNELS_BACKEND environment variable); see ``python -m tds_kernels.info``.

    Returns:
        (B, T, C) tensor, contiguous, same dtype and device as x (values copied exactly).
    """
    _validate(x)
    return _dispatch.call(OP, backend, x.device, x.contiguous())  # resolves the backend once
