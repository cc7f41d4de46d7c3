"""DiST's integration branch (paper §3.3): the I-Block's temporal FFN and the two lateral
interactions Ψ (temporal encoder → integration branch) and Φ (integration branch → temporal encoder).

Layouts: integration tokens ``Y`` are ``(B, T, N+1, αC)`` (class token first, as the CLIP tokens);
temporal features ``Z`` are channels-first ``(B, βC, γT, h, w)`` with N = h·w tokens row-major.
"""
from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU
from torch import nn


class IntegrationFFN(nn.Module):
    """The I-Block's ``FC(σ(FC(LN(Ŷ)))) + FC(σ(TConv(FC(LN'(Ŷ)))))`` (paper Eq. 4, with the
    authors' pointwise FC before the k×1×1 TConv that narrows αC to αC·r_t first; r_t = 1/4)."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0, temporal_mlp_ratio: float = 0.25, kernel_t: int = 3):
        super().__init__()
        hidden, t_hidden = max(1, int(dim * mlp_ratio)), max(1, int(dim * temporal_mlp_ratio))
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm_t = nn.LayerNorm(dim)
        self.t_in = nn.Linear(dim, t_hidden)
        # full (not depthwise) conv over time, per token: weight (t_hidden, t_hidden, k)
        self.t_conv = nn.Conv1d(t_hidden, t_hidden, kernel_t, padding=kernel_t // 2)
        self.t_out = nn.Linear(t_hidden, dim)
        self.act = QuickGELU()

    def temporal_conv(self, h: torch.Tensor) -> torch.Tensor:
        """k×1×1 conv over T of (B, T, L, c) tokens (each token position on its own)."""
        B, T, L, c = h.shape
        h = h.permute(0, 2, 3, 1).reshape(B * L, c, T)
        h = self.t_conv(h)
        return h.reshape(B, L, -1, T).permute(0, 3, 1, 2)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        spatial = self.fc2(self.act(self.fc1(self.norm(y_hat))))
        temporal = self.t_out(self.act(self.temporal_conv(self.t_in(self.norm_t(y_hat)))))
        return spatial + temporal


class TemporalToIntegration(nn.Module):
    """Ψ (Eq. 5): Z (B, βC, γT, h, w) → (B, T, N+1, αC): a temporal conv with kernel = stride = γ
    (βC → αC), flattened, after a learned class token per sparse frame."""

    def __init__(self, temporal_dim: int, dim: int, gamma: int, frames: int):
        super().__init__()
        self.conv = nn.Conv3d(temporal_dim, dim, kernel_size=(gamma, 1, 1), stride=(gamma, 1, 1))
        self.cls_token = nn.Parameter(torch.zeros(frames, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv(z).flatten(3).permute(0, 2, 3, 1)  # (B, T, N, αC)
        cls = self.cls_token.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        return torch.cat([cls, x], dim=2)


class IntegrationToTemporal(nn.Module):
    """Φ (Eq. 6): (B, T, N+1, αC) → (B, βC, γT, h, w): drop the class token, Linear αC → βC, back to
    the grid, nearest upsampling T → γT (each sparse frame's value repeated over its γ dense frames)."""

    def __init__(self, dim: int, temporal_dim: int, gamma: int, grid: tuple[int, int]):
        super().__init__()
        self.linear = nn.Linear(dim, temporal_dim)
        self.gamma, self.grid = gamma, tuple(grid)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.linear(y[:, :, 1:])                                  # (B, T, N, βC)
        B, T, _, c = x.shape
        x = x.permute(0, 3, 1, 2).reshape(B, c, T, *self.grid)
        return x.repeat_interleave(self.gamma, dim=2) if self.gamma > 1 else x
