"""Small building blocks of the side network, all on the token layout ``(B, T, N, d)`` (channels
last) that the tds_kernels ops use, so no permute / copy is needed between them.

* :class:`TokenBatchNorm` — ``BatchNorm3d`` over the ``(B, d, T, h, w)`` view, computed on tokens.
* :func:`temporal_dwconv` — the depthwise ``Conv3d(d, d, (3,1,1), padding (1,0,0), groups=d)``.
* :func:`pointwise` — a ``Conv3d(d_in, d_out, 1)`` as the matrix product it is.
* :func:`lean_layernorm_linear` / :func:`lean_batchnorm_linear` / :func:`lean_gelu_linear` —
  memory-lean forms of ``Linear(LayerNorm(x))``, ``Linear(BatchNorm(x))`` and ``Linear(GELU(h))``;
  :func:`lean_side_connection` — the side connection with its 0.5 / 0.5 mix; :func:`lean_temporal_dwconv` —
  the depthwise temporal conv without the zero-padded copy
  (tds_kernels.lean, re-exported here; used with ``fused_ops=True``).
* :class:`DropPath` and :func:`checkpoint_side_block` (activation checkpointing that does not
  update BatchNorm running statistics twice).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# the memory-lean autograd functions are tds_kernels' public ones, re-exported for the side network
from tds_kernels.lean import (lean_batchnorm_linear, lean_gelu_linear, lean_layernorm_linear,  # noqa: F401
                             lean_side_connection, lean_temporal_dwconv)


class TokenBatchNorm(nn.BatchNorm3d):
    """``BatchNorm3d(d)`` applied to tokens ``(..., d)``.

    BatchNorm3d on ``(B, d, T, h, w)`` normalises each channel over all B·T·h·w positions; on tokens
    that is exactly a batch norm of the ``(B·T·N, d)`` matrix, with the same parameters, buffers,
    running-statistics update and state_dict keys. On the GPU it is computed on that matrix (no
    transpose). On the CPU the matrix is handed to the kernel as the ``(1, d, B·T·N)`` view that the
    published ``(B, d, T, h, w)`` layout is: PyTorch's CPU kernels reduce an ``(M, d)`` input row by row
    in float32 and lose ~10× more accuracy in training (gradients 1.7e-6 vs 1.4e-7 relative to float64
    for 4×8×196 tokens × 320, docs/model.md §7) than on the channel-first layout, whose reductions are
    pairwise. The view costs a transposed copy inside the kernel; CPU is not the speed path.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3):
            raise ValueError(f"TokenBatchNorm: expected tokens (..., {self.num_features}), got {tuple(input.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"TokenBatchNorm: last dim must be {self.num_features}, got {tuple(x.shape)}")
        rows = x.reshape(-1, self.num_features)
        if x.device.type == "cpu":
            return super().forward(rows.t().unsqueeze(0)).squeeze(0).t().contiguous().view(x.shape)
        return super().forward(rows).view(x.shape)


def pointwise(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """A 1×1×1 ``Conv3d`` on tokens (..., d_in) → (..., d_out): the same product, no layout change."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def temporal_dwconv(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv`` = ``Conv3d(d, d, (3, 1, 1), padding=(1, 0, 0), groups=d)`` on tokens (B, T, N, d):
    ``out[t] = w0·x[t-1] + w1·x[t] + w2·x[t+1] + b`` per channel, zero padding in T."""
    d = x.shape[-1]
    # Under autocast a Conv3d would run in the autocast dtype; the elementwise form would promote to
    # the fp32 weight, so compute in x's dtype (a no-op cast without autocast).
    w = conv.weight.view(d, 3).to(x.dtype)
    xp = F.pad(x, (0, 0, 0, 0, 1, 1))  # zero frame before the first and after the last
    out = xp[:, :-2] * w[:, 0] + xp[:, 1:-1] * w[:, 1] + xp[:, 2:] * w[:, 2]
    if conv.bias is not None:
        out = out + conv.bias.to(x.dtype)
    return out


class DropPath(nn.Module):
    """Stochastic depth per clip (dim 0) on a residual branch; identity when p = 0 or in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


# ---------------------------------------------------------------------------------------------
# activation checkpointing

# Callables told the tensors each checkpointed call keeps alive until backward (its inputs): the
# activation-memory accounting in tdsclip.model.summary uses it, since checkpoint keeps them outside
# any saved-tensor hook.
CHECKPOINT_INPUT_OBSERVERS: list = []


class _RestoreBatchNormStats:
    """Re-running a block in backward must not update BatchNorm running statistics a second time:
    snapshot them before the recomputation and put them back after it."""

    def __init__(self, module: nn.Module):
        self.buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                        for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        self.saved = []

    def __enter__(self):
        self.saved = [b.detach().clone() for b in self.buffers]
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for b, s in zip(self.buffers, self.saved):
                b.copy_(s)
        self.saved = []
        return False


def checkpoint_side_block(fn, module: nn.Module, *args):
    """``fn(*args)`` under ``torch.utils.checkpoint`` (``use_reentrant=False``): its activations are
    recomputed in backward instead of kept; BatchNorm statistics in ``module`` are updated once."""
    for observe in CHECKPOINT_INPUT_OBSERVERS:
        observe([a for a in args if isinstance(a, torch.Tensor)])

    def contexts():
        return contextlib.nullcontext(), _RestoreBatchNormStats(module)

    return checkpoint(fn, *args, use_reentrant=False, context_fn=contexts)
