"""Classification head (docs/model.md §3): ``BatchNorm3d(d)`` over the final side tokens, mean over T·h·w,
``Linear(d → classes)``."""
from __future__ import annotations

import torch
from torch import nn

from .layers import TokenBatchNorm


class ClassifierHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.norm = TokenBatchNorm(dim)  # published side_post_bn: ones / zeros
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)  # published: a plain nn.Linear with its default init

    def features(self, s: torch.Tensor) -> torch.Tensor:
        """s (B, T, N, d) → pooled features (B, d)."""
        return self.norm(s).mean(dim=(1, 2))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(s)))
