"""AM flow (docs/amflow.md §2): the change, between adjacent frames, of how much attention each token
receives.

For one frame, one block and one head with queries ``Q`` and keys ``K`` (``L`` tokens, head width
``d``), the pre-softmax attention logits are ``X_A = Q Kᵀ / √d`` (the paper's eq. 1). Their column
sums say how much token ``j`` is attended to by all tokens together, and

    a_j = softmax_j( Σ_i X_A[i, j] ),      AMFlow_t = |a_t − a_{t+1}|   (eq. 4).

Because ``Σ_i q_i · k_j = (Σ_i q_i) · k_j``, the column sums are one matrix-vector product per head:
:func:`column_logits` never forms the ``L × L`` map and leaves the attention itself to whatever
fused kernel runs it. :func:`column_logits_explicit` builds the map; it is the reference the tests
(and ``fused_ops=false``) use.
"""
from __future__ import annotations

import math

import torch


def column_logits(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Column sums of ``q kᵀ / √d`` without the ``L × L`` matrix: q, k ``(..., L, d)`` → ``(..., L)``."""
    q_sum = q.sum(dim=-2, keepdim=True)                    # (..., 1, d)
    return (q_sum @ k.transpose(-2, -1)).squeeze(-2) / math.sqrt(q.shape[-1])


def column_logits_explicit(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The same from the explicit pre-softmax attention map ``q kᵀ / √d`` (``(..., L, L)``)."""
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return logits.sum(dim=-2)


def attention_distribution(col: torch.Tensor, am_heads: str) -> torch.Tensor:
    """Column-sum logits ``(M, H, L)`` → aggregated attention ``a`` ``(M, L, c)``, a softmax over the
    L tokens: ``c = 1`` with the heads' logits averaged (``mean``), ``c = H`` for ``per_head``."""
    if am_heads == "mean":
        col = col.mean(dim=1, keepdim=True)
    return torch.softmax(col.float(), dim=-1).to(col.dtype).transpose(1, 2)


def temporal_adjacent_absdiff(x: torch.Tensor) -> torch.Tensor:
    """``|x_t − x_{t+1}|`` along dim 1 of ``x`` ``(B, T, N, C)``, zero at the last frame (which has no
    successor): the fused op ``tds_kernels.temporal_adjacent_diff(x, absolute=True, direction="forward")``
    (one pass, autograd keeps only x; a ValueError for anything but a 4-D float tensor)."""
    import tds_kernels

    return tds_kernels.temporal_adjacent_diff(x, absolute=True, direction="forward")


def am_flow(a: torch.Tensor, a_next: torch.Tensor | None = None) -> torch.Tensor:
    """AM flow ``(B, T, L, c)`` from the aggregated attention ``a`` ``(B, T, L, c)``.

    ``a_next`` (optional, ``(B, T-1, L, c)``): frame t+1's attention aligned to frame t by the
    aligning encoder; then ``AMFlow_t = |a_t − ã_{t+1}|``. The last frame's flow is zero either way."""
    if a_next is None:
        return temporal_adjacent_absdiff(a)
    out = torch.zeros_like(a)
    out[:, :-1] = (a[:, :-1] - a_next).abs()
    return out


def normalise_flow(flow: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """AM flow ``(B, T, L, c)`` divided by its root mean square over the L tokens (per frame and
    channel), so that it enters the adapter on the same scale as ``LayerNorm(X)`` beside it.

    Why: the raw flow is a difference of two distributions over L tokens, of size ~1/L or less (at
    random initialisation the maps are nearly uniform: about 0.002 per token at L = 17), so its
    W_down column would need a weight hundreds of times larger than the others before it mattered.
    A frame without change (and the last frame) stays exactly zero."""
    rms = (flow.square().mean(dim=2, keepdim=True) + eps * eps).sqrt()  # eps inside: finite gradient at zero
    return flow / rms
