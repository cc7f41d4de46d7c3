"""Public entry point of the temporal adjacent difference: validation and backend dispatch."""
from __future__ import annotations

import torch

from ... import _dispatch
from . import op
from .reference import DIRECTIONS, temporal_adjacent_diff_reference

OP = "temporal_adjacent_diff"
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Every backend takes a contiguous x and the neighbour offset (-1 backward, +1 forward), except the
# reference, which takes the public arguments.
for _name, _fn in {"reference": lambda x, absolute, offset: temporal_adjacent_diff_reference(
                       x, absolute, "backward" if offset < 0 else "forward"),
                   "cpu": op.run_extension, "cuda": op.run_extension, "triton": op.run_triton}.items():
    _dispatch.register(OP, _name, _fn)


def _validate(x, absolute, direction) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"temporal_adjacent_diff: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"temporal_adjacent_diff: x must be 4-D (B, T, N, C) with frames on dim 1, "
                         f"got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise TypeError(f"temporal_adjacent_diff: x has dtype {x.dtype}; supported: float16, bfloat16, float32, "
                        "float64")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"temporal_adjacent_diff: x has a zero-size dimension, shape {tuple(x.shape)} (B, T, N, C)")
    if not isinstance(absolute, bool):
        raise TypeError(f"temporal_adjacent_diff: absolute must be a bool, got {absolute!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"temporal_adjacent_diff: direction must be 'backward' or 'forward', got {direction!r}")


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
        backends equal the reference bit for bit (the Triton interpreter truncates bf16 casts). Autograd saves nothing unless ``absolute`` (then x).
    """
    _validate(x, absolute, direction)
    return _dispatch.call(OP, backend, x.device, x.contiguous(), absolute, DIRECTIONS[direction])
