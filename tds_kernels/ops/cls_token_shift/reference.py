"""Reference definition of the CLS token shift (docs/model.md §3 side block step 2, §4 op 4).

x is (B, T, C). Output channels [:C//2] take frame t+1, channels [C//2:] take frame t-1,
zeros past either end of the clip.
"""
from __future__ import annotations

import torch


def cls_token_shift_reference(x: torch.Tensor) -> torch.Tensor:
    fold = x.shape[-1] // 2
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:] = x[:, :-1, fold:]
    return out
