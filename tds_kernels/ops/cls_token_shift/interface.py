"""Public entry point of the CLS token shift: validation and backend dispatch."""
from __future__ import annotations

import torch

from ... import _dispatch
from .._wiring import register_backends
from . import op  # noqa: F401  (registers fake kernels, autograd and the Triton ops)
from .reference import cls_token_shift_reference
from .validate import check

OP = "cls_token_shift"
# Every backend takes a contiguous x.
register_backends(OP, reference=cls_token_shift_reference)


def cls_token_shift(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Temporal shift of the CLS token (docs/model.md §3 side block step 2, §4 op 4).

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
    check(x)
    return _dispatch.call(OP, backend, x.device, x.contiguous())  # resolves the backend once
