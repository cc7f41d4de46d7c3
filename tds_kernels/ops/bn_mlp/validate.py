"""The one argument check of the fused side-block MLP, run before any backend (docs/adding-an-op.md)."""
from __future__ import annotations

import torch

from .._checks import batch_norm_args

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _tensor(t, name: str, *, optional: bool = False) -> None:
    if t is None and optional:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"bn_mlp: {name} must be a torch.Tensor{' or None' if optional else ''}, "
                        f"got {type(t).__name__}")


def _vector(t, n: int, name: str, device, *, optional: bool = False) -> None:
    _tensor(t, name, optional=optional)
    if t is None:
        return
    if t.shape != (n,):
        raise ValueError(f"bn_mlp: {name} must have shape ({n},), got {tuple(t.shape)}")
    if t.dtype not in DTYPES:
        raise TypeError(f"bn_mlp: {name} has dtype {t.dtype}; expected a floating dtype")
    if t.device != device:
        raise ValueError(f"bn_mlp: {name} is on {t.device} but x is on {device}")


def check(x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps) -> None:
    _tensor(x, "x")
    _tensor(w1, "w1")
    _tensor(w2, "w2")
    if x.dim() < 2:
        raise ValueError(f"bn_mlp: x must be (..., d) with at least 2 dims (tokens, channels), got shape "
                         f"{tuple(x.shape)}")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"bn_mlp: x has a zero-size dimension, shape {tuple(x.shape)}")
    d = x.shape[-1]
    if w1.dim() != 2 or w1.shape[1] != d or w1.shape[0] == 0:
        raise ValueError(f"bn_mlp: w1 must be (H, {d}) with H >= 1 (Linear d → H), got {tuple(w1.shape)}")
    H = w1.shape[0]
    if w2.dim() != 2 or w2.shape[1] != H or w2.shape[0] == 0:
        raise ValueError(f"bn_mlp: w2 must be (O, {H}) with O >= 1 (Linear H → O), got {tuple(w2.shape)}")
    if w1.dtype not in DTYPES:
        raise TypeError(f"bn_mlp: w1 has dtype {w1.dtype}; supported: float16, bfloat16, float32, float64")
    for t, name in ((w2, "w2"), (b1, "b1"), (b2, "b2")):
        if isinstance(t, torch.Tensor) and t.dtype != w1.dtype:
            raise TypeError(f"bn_mlp: {name} has dtype {t.dtype} but w1 has {w1.dtype}; the linear layers must "
                            "share one dtype")
    if x.dtype not in (w1.dtype, torch.float32):
        raise TypeError(f"bn_mlp: x has dtype {x.dtype}; it must be w1's dtype ({w1.dtype}) or float32")
    for t, name in ((w1, "w1"), (w2, "w2")):
        if t.device != x.device:
            raise ValueError(f"bn_mlp: {name} is on {t.device} but x is on {x.device}")
    _vector(b1, H, "b1", x.device, optional=True)
    _vector(b2, w2.shape[0], "b2", x.device, optional=True)
    _vector(bn_weight, d, "bn_weight", x.device)
    _vector(bn_bias, d, "bn_bias", x.device)
    if not isinstance(training, bool):
        raise TypeError(f"bn_mlp: training must be a bool, got {type(training).__name__}")
    _vector(running_mean, d, "running_mean", x.device, optional=training)
    _vector(running_var, d, "running_var", x.device, optional=training)
    batch_norm_args("bn_mlp", training=training, eps=eps, count=x.numel() // d,
                    running={"running_mean": running_mean, "running_var": running_var})


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py); tiny: one token (one value per
    BatchNorm channel)."""
    d, H, O = 8, 16, 8
    x = torch.randn(1, d) if tiny else torch.randn(2, 3, 5, d)
    return {"x": x, "bn_weight": torch.rand(d) + 0.5, "bn_bias": torch.randn(d), "running_mean": torch.zeros(d),
            "running_var": torch.ones(d), "w1": torch.randn(H, d) / 3, "b1": torch.randn(H) / 3,
            "w2": torch.randn(O, H) / 4, "b2": torch.randn(O) / 4, "training": training, "eps": 1e-5}
