"""The one argument check of the temporal max-difference, run before any backend (docs/adding-an-op.md)."""
from __future__ import annotations

import torch

from .. import _checks


def check(x, kernel_size, mix) -> None:
    _checks.frame_tokens("temporal_max_diff", x)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"temporal_max_diff: kernel_size must be an int, got {type(kernel_size).__name__}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"temporal_max_diff: kernel_size must be odd and positive, got {kernel_size}")
    if not isinstance(mix, bool):
        raise TypeError(f"temporal_max_diff: mix must be a bool, got {type(mix).__name__}")


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py). No BatchNorm: training and tiny
    change nothing."""
    return {"x": torch.randn(1, 3, 2, 20), "kernel_size": 3, "mix": True}
