"""Public functional TD-Adapter (docs/model.md §3 "TD-Adapter", §4 op 2) and its backends.

Backends registered with :mod:`tds_kernels._dispatch` under the op name ``"td_adapter"``:
``"reference"`` (plain PyTorch, reference.py), ``"cpu"`` / ``"cuda"`` (``tds::td_adapter_forward``, the
compiled extension) and ``"triton"`` (``tds_triton::td_adapter_forward``, ``triton.py``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ... import _dispatch
from .._wiring import register_backends
from . import op  # noqa: F401  (registers fake kernels, autograd and the Triton ops)
from .reference import td_adapter_functional_reference
from .validate import TRITON_DTYPES, check

OP = "td_adapter"
# Every backend takes the forward schema's arguments (u, w_down, ..., training, eps, kernel_size, mix, gated).
register_backends(OP, reference=td_adapter_functional_reference)


def td_adapter(u: Tensor, w_down: Tensor, w_up: Tensor, gamma1: Tensor, beta1: Tensor, gamma2: Tensor,
               beta2: Tensor, running_mean1: Tensor, running_var1: Tensor, running_mean2: Tensor,
               running_var2: Tensor, *, training: bool, eps: float = 1e-5, kernel_size: int = 3, mix: bool = True,
               gated: bool = True, backend: str | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The TD-Adapter path, fused: reduce → BN1 → temporal max-difference → mix → expand → BN2 → gate.

    ::

        b   = BN1(u @ w_down.T)                      (M, h), M = B*T*N tokens, h = d/r
        m   = b - maxpool_t(b)                        window kernel_size over frames, -inf padding
        y   = 0.5*m + 0.5*mean_h(m)       if mix      channel-mean mix
        y   = BN2(y @ w_up.T)                         (M, d)
        out = u + u*(sigmoid(y) - 0.5)    if gated    else u + y

    Args:
        u: tokens ``(B, T, N, d)``, frames on dim 1, channels last (a non-contiguous u is copied).
            float32, float16, bfloat16 (computed in float32) or float64 (computed in float64; not on Triton).
        w_down: ``(h, d)`` reduce weight (the ``Conv3d(d, h, 1)`` weight viewed 2-D).
        w_up: ``(d, h)`` expand weight.
        gamma1, beta1, running_mean1, running_var1: BN1 parameters and buffers, ``(h,)``.
        gamma2, beta2, running_mean2, running_var2: BN2 parameters and buffers, ``(d,)``.
        training: BatchNorm uses the batch statistics (over all M tokens) and the gradient flows through
            them; otherwise the running statistics (folded into the 1×1 weights and bias).
        eps: BatchNorm epsilon (both BNs).
        kernel_size: temporal max-pool window, odd and positive (3, 5, 7).
        mix, gated: ``True, True`` is the published adapter; ``False, False`` the paper's plain variant.
        backend: ``None`` (automatic), ``"reference"``, ``"cpu"``, ``"cuda"`` or ``"triton"``.

    Returns:
        ``(out, mean1, var1, mean2, var2)``: ``out`` ``(B, T, N, d)`` contiguous in u's dtype; the BN
        statistics used (training: batch mean and biased variance; eval: copies of the running ones) in
        float32 (float64 for float64 u). Only ``out`` is differentiable. The running buffers are NOT
        updated here: :class:`TDAdapter` does that from the returned statistics.
    """
    check(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
           running_var2, training, eps, kernel_size)
    chosen = _dispatch.resolve(OP, backend, u.device)
    if chosen == "triton" and u.dtype not in TRITON_DTYPES:
        raise TypeError(f"td_adapter: the triton backend supports u of dtype {TRITON_DTYPES}, got {u.dtype}")
    return _dispatch.call(OP, chosen, u.device, u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1,
                          running_var1, running_mean2, running_var2, bool(training), float(eps), int(kernel_size),
                          bool(mix), bool(gated))
