"""The one argument check of the temporal adjacent difference, run before any backend (docs/adding-an-op.md)."""
from __future__ import annotations

import torch

from .. import _checks
from .reference import DIRECTIONS


def check(x, absolute, direction) -> None:
    _checks.frame_tokens("temporal_adjacent_diff", x)
    if not isinstance(absolute, bool):
        raise TypeError(f"temporal_adjacent_diff: absolute must be a bool, got {type(absolute).__name__}")
    if direction not in DIRECTIONS:
        raise ValueError(f"temporal_adjacent_diff: direction must be 'backward' or 'forward', got {direction!r}")


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py). No BatchNorm: training and tiny
    change nothing."""
    return {"x": torch.randn(1, 3, 2, 20), "absolute": True, "direction": "forward"}
