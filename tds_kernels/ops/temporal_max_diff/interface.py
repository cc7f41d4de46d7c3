"""Public entry point of the temporal max-difference: validation and backend dispatch."""
from __future__ import annotations

import torch

from ... import _dispatch
from .._wiring import register_backends
from . import op  # noqa: F401  (registers fake kernels, autograd and the Triton ops)
from .reference import temporal_max_diff_reference
from .validate import check

OP = "temporal_max_diff"
# Every backend takes (x, kernel_size, mix) with x contiguous.
register_backends(OP, reference=temporal_max_diff_reference)


def temporal_max_diff(x: torch.Tensor, kernel_size: int = 3, mix: bool = False,
                      backend: str | None = None) -> torch.Tensor:
    """Temporal max-difference of the TD-Adapter (docs/model.md §3, §4 op 1).

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
    check(x, kernel_size, mix)
    return _dispatch.call(OP, backend, x.device, x.contiguous(), kernel_size, mix)  # resolves once
