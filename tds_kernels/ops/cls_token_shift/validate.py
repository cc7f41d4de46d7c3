"""The one argument check of the CLS token shift, run before any backend (docs/adding-an-op.md)."""
from __future__ import annotations

import torch

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"cls_token_shift: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"cls_token_shift: x must be 3-D (B, T, C) with frames on dim 1, got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise TypeError(f"cls_token_shift: x has dtype {x.dtype}; supported: float16, bfloat16, float32, float64")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"cls_token_shift: x has a zero-size dimension, shape {tuple(x.shape)} (B, T, C)")


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py). No BatchNorm: training and tiny
    change nothing."""
    return {"x": torch.randn(1, 3, 20)}
