"""DiST's temporal encoder (paper §3.2): a 3-D patch stem on the γT dense frames and one R(2+1)D
T-Block per layer, on channels-first features ``Z`` of shape ``(B, βC, γT, h, w)``.

Details the paper leaves open follow the authors' code (docs/dist.md "Decisions"): the stem's
temporal kernel is 5 with padding 2 and stride 1 (no temporal downsampling); a T-Block is
``σ(Z + Conv(1,3,3)(σ(Conv(k,1,1)(LN(Z)))))`` with σ = QuickGELU, LN over channels, the temporal
(k×1×1) conv first and the spatial (1×3×3) one second.
"""
from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU
from torch import nn


class TemporalStem(nn.Module):
    """Normalised dense frames (B, 3, γT, H, W) → Z⁰ (B, βC, γT, H/P, W/P): spatial kernel = stride =
    patch P, so Z's grid is the spatial encoder's token grid; temporal stride 1."""

    def __init__(self, dim: int, patch_size: int, kernel_t: int):
        super().__init__()
        self.conv = nn.Conv3d(3, dim, kernel_size=(kernel_t, patch_size, patch_size),
                              stride=(1, patch_size, patch_size), padding=(kernel_t // 2, 0, 0))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.conv(frames)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dim of a channels-first (B, C, T, h, w) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class TBlock(nn.Module):
    """R(2+1)D temporal block: ``σ(Z + spatial(σ(temporal(LN(Z)))))``."""

    def __init__(self, dim: int, kernel_t: int = 3, mlp_ratio: float = 1.0):
        super().__init__()
        hidden = max(1, int(dim * mlp_ratio))
        self.norm = ChannelLayerNorm(dim)
        self.temporal = nn.Conv3d(dim, hidden, kernel_size=(kernel_t, 1, 1), padding=(kernel_t // 2, 0, 0))
        self.act = QuickGELU()
        self.spatial = nn.Conv3d(hidden, dim, kernel_size=(1, 3, 3), padding=(0, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.act(z + self.spatial(self.act(self.temporal(self.norm(z)))))
