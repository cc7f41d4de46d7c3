"""The one argument check of the temporal adjacent difference, run before any backend (docs/adding-an-op.md)."""
from __future__ import annotations

import torch

from .reference import DIRECTIONS

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check(x, absolute, direction) -> None:
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
        raise TypeError(f"temporal_adjacent_diff: absolute must be a bool, got {type(absolute).__name__}")
    if direction not in DIRECTIONS:
        raise ValueError(f"temporal_adjacent_diff: direction must be 'backward' or 'forward', got {direction!r}")


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py). No BatchNorm: training and tiny
    change nothing."""
    return {"x": torch.randn(1, 3, 2, 20), "absolute": True, "direction": "forward"}
