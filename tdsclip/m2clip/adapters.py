"""M2-CLIP's trainable adapters (docs/m2clip.md §adapters).

* :class:`TEDAdapter` — before a frozen ViT block's MHSA (or FFN): temporal Enhancement
  ``Z_E = Conv1D_t(Z W_dn) W_up`` on every token (CLS included) plus temporal Difference
  ``z_D,t = Conv2D_hw((z_t - z_{t-1}) W_dn) W_up`` on the patch tokens (zero difference at the first frame),
  ``out = Z + Z_E + Z_D``.
* :class:`TextAdapter` — Houlsby adapter ``z + GELU(z W_dn) W_up`` (paper Eq. 9).
* :class:`FrameAdapter` — the authors' ``t_adapter``: a residual depthwise temporal convolution on the
  per-frame video embeddings before they are averaged.

Initialisation follows the authors' code: convolution weights and biases and the linear biases are zero,
so every adapter starts as the identity and training starts from frozen CLIP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tds_kernels import temporal_adjacent_diff


def _zero_bias(*layers: nn.Module) -> None:
    for layer in layers:
        nn.init.zeros_(layer.bias)


class TEDAdapter(nn.Module):
    """Tokens ``(B, T, 1 + h*w, C)`` → same shape. The TE and TD paths have their own projections (as in
    the authors' code) and depthwise convolutions (``te_kernel`` over time, ``td_kernel`` x ``td_kernel``
    over the token grid, zero padding).

    The TD path takes the difference *after* its down-projection: ``(z_t - z_{t-1}) W + b`` equals
    ``(z_t W) - (z_{t-1} W) + b`` exactly (W linear), so the frame difference runs on the bottleneck
    width (384) instead of the model width (768), and the bias is added after it, as in the authors'
    ``fc1(x_t - x_{t-1})`` (the first frame's difference is 0, its projection b).
    ``backend``: tds_kernels backend of the difference (None: automatic; "reference": plain PyTorch).
    """

    def __init__(self, width: int, bottleneck: int, grid: tuple[int, int], te_kernel: int = 3, td_kernel: int = 3,
                 backend: str | None = None):
        super().__init__()
        self.grid, self.backend = tuple(grid), backend
        self.te_down = nn.Linear(width, bottleneck)
        self.te_conv = nn.Conv1d(bottleneck, bottleneck, te_kernel, padding=te_kernel // 2, groups=bottleneck)
        self.te_up = nn.Linear(bottleneck, width)
        self.td_down = nn.Linear(width, bottleneck)
        self.td_conv = nn.Conv2d(bottleneck, bottleneck, td_kernel, padding=td_kernel // 2, groups=bottleneck)
        self.td_up = nn.Linear(bottleneck, width)
        for conv in (self.te_conv, self.td_conv):
            nn.init.zeros_(conv.weight)
        _zero_bias(self.te_down, self.te_conv, self.te_up, self.td_down, self.td_conv, self.td_up)

    def enhancement(self, z: torch.Tensor) -> torch.Tensor:
        """Z_E: (B, T, L, C) → (B, T, L, C)."""
        B, T, L, _ = z.shape
        e = self.te_down(z)                                        # (B, T, L, c)
        c = e.shape[-1]
        e = e.permute(0, 2, 3, 1).reshape(B * L, c, T)             # convolve along T, per token and channel
        e = self.te_conv(e).reshape(B, L, c, T).permute(0, 3, 1, 2)
        return self.te_up(e)

    def difference(self, patches: torch.Tensor) -> torch.Tensor:
        """Z_D on the patch tokens: (B, T, h*w, C) → (B, T, h*w, C)."""
        B, T, M, _ = patches.shape
        h, w = self.grid
        u = F.linear(patches, self.td_down.weight)                 # (B, T, M, c), bias after the difference
        d = temporal_adjacent_diff(u, backend=self.backend) + self.td_down.bias
        c = d.shape[-1]
        d = d.reshape(B * T, h, w, c).permute(0, 3, 1, 2)          # (BT, c, h, w)
        d = self.td_conv(d).permute(0, 2, 3, 1).reshape(B, T, M, c)
        return self.td_up(d)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[2] != 1 + self.grid[0] * self.grid[1]:
            raise ValueError(f"TEDAdapter: expected 1 + {self.grid[0]}x{self.grid[1]} tokens, got {z.shape[2]}")
        z_e = self.enhancement(z)
        z_d = self.difference(z[:, :, 1:])
        return z + z_e + F.pad(z_d, (0, 0, 1, 0))                  # Z_D is zero on the CLS token


class TextAdapter(nn.Module):
    """Houlsby adapter ``z + GELU(z W_dn) W_up`` on tokens (..., C)."""

    def __init__(self, width: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        _zero_bias(self.down, self.up)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.up(F.gelu(self.down(z)))


class FrameAdapter(nn.Module):
    """Per-frame embeddings (B, T, E) → (B, T, E): ``v + Conv1D_t(v W_dn) W_up`` (depthwise, kernel 3,
    bottleneck E/2, zero-initialised convolution: the authors' ``t_adapter``)."""

    def __init__(self, dim: int, kernel: int = 3):
        super().__init__()
        hidden = max(1, dim // 2)
        self.down = nn.Linear(dim, hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.conv.weight)
        _zero_bias(self.down, self.conv, self.up)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        e = self.conv(self.down(v).transpose(1, 2)).transpose(1, 2)
        return v + self.up(e)
