"""Reference definition of the temporal adjacent difference (M2-CLIP's TED-Adapter, AM flow).

x is (B, T, N, C) with frames on dim 1.
  direction "backward": y_t = x_t - x_{t-1}, and y_0 = 0 (the first frame has no predecessor);
  direction "forward":  y_t = x_t - x_{t+1}, and y_{T-1} = 0 (the last frame has no successor);
``absolute=True`` takes |.| of the difference. With T = 1 the output is all zeros.
"""
from __future__ import annotations

import torch

DIRECTIONS = ("backward", "forward")


def temporal_adjacent_diff_reference(x: torch.Tensor, absolute: bool = False,
                                     direction: str = "backward") -> torch.Tensor:
    y = torch.zeros_like(x)
    if direction == "backward":
        d = x[:, 1:] - x[:, :-1]
        y[:, 1:] = d.abs() if absolute else d
    else:
        d = x[:, :-1] - x[:, 1:]
        y[:, :-1] = d.abs() if absolute else d
    return y
