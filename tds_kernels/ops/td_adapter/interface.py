"""Public functional TD-Adapter (SPEC §3 "TD-Adapter", §4 op 2) and its backends.

Backends registered with :mod:`tds_kernels._dispatch` under the op name ``"td_adapter"``:
``"reference"`` (plain PyTorch, below), ``"cpu"`` / ``"cuda"`` (``tds::td_adapter_forward``, the
compiled extension) and ``"triton"`` (``tds_triton::td_adapter_forward``, ``triton.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import _dispatch
from . import op as _op  # noqa: F401  (registers fake kernels and autograd)

OP = "td_adapter"
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


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
    _check(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
           running_var2, training, eps, kernel_size)
    chosen = _dispatch.resolve(OP, backend, u.device)
    if chosen == "triton" and u.dtype not in _TRITON_DTYPES:
        raise TypeError(f"td_adapter: the triton backend supports u of dtype {_TRITON_DTYPES}, got {u.dtype}")
    return _dispatch.call(OP, chosen, u.device, u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1,
                          running_var1, running_mean2, running_var2, bool(training), float(eps), int(kernel_size),
                          bool(mix), bool(gated))


def _check(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
           running_var2, training, eps, kernel_size) -> None:
    """Clear errors for bad input (the kernels would otherwise crash or read out of bounds)."""
    named = {"u": u, "w_down": w_down, "w_up": w_up, "gamma1": gamma1, "beta1": beta1, "gamma2": gamma2,
             "beta2": beta2, "running_mean1": running_mean1, "running_var1": running_var1,
             "running_mean2": running_mean2, "running_var2": running_var2}
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"td_adapter: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"td_adapter: {name} must be a floating-point tensor, got {t.dtype}")
    if u.dtype not in _DTYPES:
        raise TypeError(f"td_adapter: u must be one of {_DTYPES}, got {u.dtype}")
    if u.dim() != 4:
        raise ValueError(f"td_adapter: u must be 4-D (B, T, N, d), got shape {tuple(u.shape)}")
    if u.numel() == 0:
        raise ValueError(f"td_adapter: u has a zero-size dimension: shape {tuple(u.shape)}")
    d = u.shape[-1]
    if w_down.dim() != 2 or w_down.shape[1] != d or w_down.shape[0] == 0:
        raise ValueError(f"td_adapter: w_down must be (h, d) with d = {d} (u's last dim), got {tuple(w_down.shape)}")
    h = w_down.shape[0]
    if tuple(w_up.shape) != (d, h):
        raise ValueError(f"td_adapter: w_up must be (d, h) = ({d}, {h}), got {tuple(w_up.shape)}")
    for name, n in (("gamma1", h), ("beta1", h), ("running_mean1", h), ("running_var1", h), ("gamma2", d),
                    ("beta2", d), ("running_mean2", d), ("running_var2", d)):
        if tuple(named[name].shape) != (n,):
            raise ValueError(f"td_adapter: {name} must have shape ({n},), got {tuple(named[name].shape)}")
    for name, t in named.items():
        if t.device != u.device:
            raise ValueError(f"td_adapter: {name} is on {t.device} but u is on {u.device}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"td_adapter: kernel_size must be a positive odd integer, got {kernel_size!r}")
    if not eps >= 0:
        raise ValueError(f"td_adapter: eps must be >= 0, got {eps!r}")
    if training and u.numel() // d <= 1:
        raise ValueError(f"td_adapter: training-mode BatchNorm needs more than one token per channel, got u "
                         f"of shape {tuple(u.shape)}")


# ---------------------------------------------------------------------------------------- backends
def td_adapter_functional_reference(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1,
                                    running_mean2, running_var2, training, eps, kernel_size, mix, gated):
    """Plain PyTorch (F.linear, F.batch_norm, F.max_pool1d): the fallback of last resort. It computes
    in u's dtype (weights cast to it), like the layer reference, and returns the BN statistics."""
    B, T, N, d = u.shape
    h = w_down.shape[0]
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    x = u.reshape(B * T * N, d)
    b = F.linear(x, w_down.to(u.dtype))                                   # (M, h)
    b, mean1, var1 = _batch_norm(b, gamma1, beta1, running_mean1, running_var1, training, eps, acc)
    # max over frames: (B, T, N, h) -> (B*N*h, 1, T) for max_pool1d (first maximum wins, as max_pool3d)
    bt = b.reshape(B, T, N * h).transpose(1, 2).reshape(B * N * h, 1, T)
    pooled = F.max_pool1d(bt, kernel_size, stride=1, padding=kernel_size // 2)
    m = (bt - pooled).reshape(B, N * h, T).transpose(1, 2).reshape(B * T * N, h)
    if mix:
        m = 0.5 * m + 0.5 * m.mean(dim=1, keepdim=True)
    z = F.linear(m, w_up.to(u.dtype))                                     # (M, d)
    y, mean2, var2 = _batch_norm(z, gamma2, beta2, running_mean2, running_var2, training, eps, acc)
    out = x + x * (torch.sigmoid(y) - 0.5) if gated else x + y
    return out.reshape(B, T, N, d), mean1, var1, mean2, var2


def _batch_norm(x, gamma, beta, running_mean, running_var, training, eps, acc):
    if training:
        with torch.no_grad():
            var, mean = torch.var_mean(x.detach().to(acc), dim=0, correction=0)
    else:
        mean, var = running_mean.detach().to(acc).clone(), running_var.detach().to(acc).clone()
    # F.batch_norm normalises (and differentiates through the batch statistics) as nn.BatchNorm does
    y = F.batch_norm(x, None if training else running_mean.to(x.dtype), None if training else running_var.to(x.dtype),
                     gamma.to(x.dtype), beta.to(x.dtype), training=training, eps=eps)
    return y, mean, var


def _extension_impl(*args):
    return torch.ops.tds.td_adapter_forward(*args)


def _triton_impl(*args):
    return torch.ops.tds_triton.td_adapter_forward(*args)


_dispatch.register(OP, "reference", td_adapter_functional_reference)
_dispatch.register(OP, "cpu", _extension_impl)
_dispatch.register(OP, "cuda", _extension_impl)
_dispatch.register(OP, "triton", _triton_impl)
