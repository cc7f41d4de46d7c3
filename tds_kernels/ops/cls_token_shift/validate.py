"""The one argument check of the CLS token shift, run before any backend (docs/adding-an-op.md)."""
from __future__ import annotations

import torch

from .. import _checks


def check(x) -> None:
    _checks.frame_tokens("cls_token_shift", x, "(B, T, C)")


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py). No BatchNorm: training and tiny
    change nothing."""
    return {"x": torch.randn(1, 3, 20)}
