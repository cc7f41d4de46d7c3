"""The one argument check of the TD-Adapter, run before any backend (docs/adding-an-op.md): the public
function and the module call :func:`check`, so every backend accepts and rejects the same inputs."""
from __future__ import annotations

import torch
from torch import Tensor

from .._checks import batch_norm_args

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
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
    if u.dtype not in DTYPES:
        raise TypeError(f"td_adapter: u must be one of {DTYPES}, got {u.dtype}")
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
    batch_norm_args("td_adapter", training=training, eps=eps, count=u.numel() // d,
                    running={n: named[n] for n in ("running_mean1", "running_var1", "running_mean2", "running_var2")})


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py); tiny: one token (one value per
    BatchNorm channel)."""
    d, h = 16, 4
    u = torch.randn(1, 1, 1, d) if tiny else torch.randn(2, 3, 5, d)
    return {"u": u, "w_down": torch.randn(h, d) / 4, "w_up": torch.randn(d, h) / 2,
            "gamma1": torch.rand(h) + 0.5, "beta1": torch.randn(h), "gamma2": torch.rand(d) + 0.5,
            "beta2": torch.randn(d), "running_mean1": torch.zeros(h), "running_var1": torch.ones(h),
            "running_mean2": torch.zeros(d), "running_var2": torch.ones(d), "training": training, "eps": 1e-5}
