"""Public entry point of the temporal max-difference: validation and backend dispatch."""
from __future__ import annotations

import torch

from ... import _dispatch
from . import op
from .reference import temporal_max_diff_reference

OP = "temporal_max_diff"
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Every backend takes (x, kernel_size, mix) with x contiguous. "cpu" and "cuda" are the same
# extension op: the dispatcher routes by device.
_IMPLS = {
    "reference": temporal_max_diff_reference,
    "cpu": op.run_extension,
    "cuda": op.run_extension,
    "triton": op.run_triton,
}
for _name, _fn in _IMPLS.items():
    _dispatch.register(OP, _name, _fn)


def _validate(x, kernel_size, mix) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"temporal_max_diff: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"temporal_max_diff: x must be 4-D (B, T, N, C) with frames on dim 1, "
                         f"got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise TypeError(f"temporal_max_diff: x has dtype {x.dtype}; supported: float16, bfloat16, float32, float64")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"temporal_max_diff: x has a zero-size dimension, shape {tuple(x.shape)} (B, T, N, C)")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"temporal_max_diff: kernel_size must be an int, got {type(kernel_size).__name__}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"temporal_max_diff: kernel_size must be odd and positive, got {kernel_size}")
    if not isinstance(mix, bool):
        raise TypeError(f"temporal_max_diff: mix must be a bool, got {type(mix).__name__}")


def temporal_max_diff(x: torch.Tensor, kernel_size: int = 3, mix: bool = False,
                      backend: str | None = None) -> torch.Tensor:
    """Temporal max-difference of the TD-Adapter (SPEC §3, §4 op 1).

    ``y = x - maxpool_t(x)``: max over the ``kernel_size`` frames centred on each frame (stride 1,
    -inf padding, so windows are clipped at the ends of the clip). With ``mix=True`` the result is
    then mixed with its channel mean per token: ``y = 0.5*y + 0.5*y.mean(-1, keepdim=True)``.

    Args:
        x: (B, T, N, C) — B clips, T frames (dim 1), N tokens, C channels (channels last).
            float16, bfloat16, float32 or float64, on CPU or CUDA; any strides (made contiguous).
        kernel_size: odd window length k ≥ 1 (3, 5 or 7 in TDS-CLIP).
        mix: apply the channel-mean mix.
        backend: "cpu", "cuda", "triton", "reference", "auto" or None (automatic, or the
            TDS_KERNELS_BACKEND environment variable); see ``python -m tds_kernels.info``.

    Returns:
        (B, T, N, C) tensor, contiguous, same dtype and device as x. Arithmetic is fp32 for 16-bit
        inputs. NaN propagates like max_pool (a NaN in a window wins).

    Backward saves only x and recomputes each window's argmax; the gradient of a tied max goes to
    the first (lowest t) maximal frame, as with ``F.max_pool1d``.
    """
    _validate(x, kernel_size, mix)
    return _dispatch.call(OP, backend, x.device, x.contiguous(), kernel_size, mix)  # resolves once
