"""Public entry point of the temporal adjacent difference: validation and backend dispatch."""
from __future__ import annotations

import torch

from ... import _dispatch
from .._wiring import register_backends
from . import op  # noqa: F401  (registers fake kernels, autograd and the Triton ops)
from .reference import temporal_adjacent_diff_reference
from .validate import check

OP = "temporal_adjacent_diff"
# Every backend takes (x, absolute, direction) with x contiguous.
register_backends(OP, reference=temporal_adjacent_diff_reference)


def temporal_adjacent_diff(x: torch.Tensor, absolute: bool = False, direction: str = "backward",
                           backend: str | None = None) -> torch.Tensor:
    """Difference of each frame with its neighbour along dim 1.

    * ``direction="backward"`` (default): ``y_t = x_t - x_{t-1}``, ``y_0 = 0`` (M2-CLIP's TED-Adapter:
      "for the first frame, we set its feature differences to zeros");
    * ``direction="forward"``: ``y_t = x_t - x_{t+1}``, ``y_{T-1} = 0`` (the last frame has no successor);
    * ``absolute=True``: ``|.|`` of the difference (AM flow's ``|A_t - A_{t+1}|`` with "forward"); its
      gradient is ``sign(difference)``, 0 where the difference is 0 (as ``torch.abs``).

    Args:
        x: (B, T, N, C) — B clips, T frames (dim 1), any two trailing dims (tokens, channels).
            float16, bfloat16, float32 or float64, on CPU or CUDA; any strides (made contiguous).
        absolute: take the absolute value of the difference.
        direction: "backward" or "forward" (which neighbour is subtracted).
        backend: "cpu", "cuda", "triton", "reference", "auto" or None (automatic, or the
            TDS_KERNELS_BACKEND environment variable); see ``python -m tds_kernels.info``.

    Returns:
        (B, T, N, C) tensor, contiguous, same dtype and device as x. Each difference is computed in
        float32 (float64 for float64) and rounded once, as PyTorch's subtraction does, so the compiled
        backends equal the reference bit for bit (the Triton interpreter truncates bf16 casts). Autograd
        saves nothing unless ``absolute`` (then x).
    """
    check(x, absolute, direction)
    return _dispatch.call(OP, backend, x.device, x.contiguous(), absolute, direction)  # resolves the backend once
