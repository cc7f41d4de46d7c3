"""Per-block temporal modules and their classifiers (docs/amflow.md §4).

Each adapter's downsampled embedding ``E`` ``(B, T, L, r)`` is pooled over the tokens (mean,
:class:`TokenPool` or :class:`SlotPool`), run through a temporal module over the T frames, averaged
over time and classified: one logit vector per adapter, two per adapted block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Conv1d):
    """Conv1d over time, left-padded so output t sees inputs ≤ t (Bai et al. 2018's TCN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(F.pad(x, (pad, 0)))


class TCNLevel(nn.Module):
    """One TCN residual block: two causal dilated convs with ReLU, plus the (1×1-projected) input."""

    def __init__(self, in_dim: int, dim: int, kernel: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(in_dim, dim, kernel, dilation=dilation)
        self.conv2 = CausalConv1d(dim, dim, kernel, dilation=dilation)
        self.skip = nn.Conv1d(in_dim, dim, 1) if in_dim != dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.relu(y + self.skip(x))


class TCN(nn.Module):
    """``levels`` residual blocks with dilations 1, 2, 4, …: ``(B, T, in)`` → ``(B, T, dim)``."""

    def __init__(self, in_dim: int, dim: int, levels: int = 1, kernel: int = 2):
        super().__init__()
        self.levels = nn.ModuleList(TCNLevel(in_dim if i == 0 else dim, dim, kernel, 2 ** i) for i in range(levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        for level in self.levels:
            x = level(x)
        return x.transpose(1, 2)


class LSTMTemporal(nn.Module):
    """A unidirectional LSTM: ``(B, T, in)`` → ``(B, T, dim)``."""

    def __init__(self, in_dim: int, dim: int, layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, dim, num_layers=layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class TransformerTemporal(nn.Module):
    """Input projection, learned frame positions (up to ``max_frames``) and a pre-norm transformer
    encoder: ``(B, T, in)`` → ``(B, T, dim)``."""

    def __init__(self, in_dim: int, dim: int, layers: int = 1, heads: int = 8, max_frames: int = 64):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.pos = nn.Parameter(torch.zeros(max_frames, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T > self.pos.shape[0]:
            raise ValueError(f"transformer temporal module: at most {self.pos.shape[0]} frames, got {T}")
        return self.encoder(self.proj(x) + self.pos[:T])


def build_temporal(kind: str, in_dim: int, dim: int, layers: int, heads: int, kernel: int) -> nn.Module:
    if kind == "tcn":
        return TCN(in_dim, dim, layers, kernel)
    if kind == "lstm":
        return LSTMTemporal(in_dim, dim, layers)
    if kind == "transformer":
        return TransformerTemporal(in_dim, dim, layers, heads)
    raise ValueError(f"temporal must be tcn, lstm or transformer, got {kind!r}")


class TokenPool(nn.Module):
    """``(B, T, L, r)`` → ``(B, T, r)``: per channel, a learned weighted sum over the L tokens,
    initialised to the mean. Unlike a plain mean it can keep *where* a channel fired (the weights
    differ by position), which the temporal module needs to tell directions of motion apart."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((tokens, dim), 1.0 / tokens))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if e.shape[2] != self.weight.shape[0]:
            raise ValueError(f"token pooling: expected {self.weight.shape[0]} tokens, got {e.shape[2]}")
        return (e * self.weight).sum(dim=2)


class SlotPool(nn.Module):
    """``(B, T, L, r)`` → ``(B, T, K·r)``: K learned weightings of the L tokens ("slots"), each a
    weighted sum of the token vectors, concatenated. A single pooled vector per frame (mean or
    :class:`TokenPool`) keeps one number per channel, so *where* two things happened in a frame
    (the change left behind at one place, arriving at another) is gone before the temporal
    module compares frames; K slots keep a coarse map of K regions. The weights start random
    (std 1/√L), so the K slots differ from the first step."""

    def __init__(self, tokens: int, slots: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(tokens, slots) / tokens ** 0.5)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if e.shape[2] != self.weight.shape[0]:
            raise ValueError(f"slot pooling: expected {self.weight.shape[0]} tokens, got {e.shape[2]}")
        return torch.einsum("btlr,lk->btkr", e, self.weight.to(e.dtype)).flatten(2)


class TemporalHead(nn.Module):
    """``E`` ``(B, T, L, r)`` → token pooling (mean, or :class:`TokenPool`) → temporal module → time
    mean → LayerNorm → logits."""

    def __init__(self, temporal: nn.Module, dim: int, num_classes: int, dropout: float = 0.0,
                 pool: nn.Module | None = None):
        super().__init__()
        self.pool = pool
        self.temporal = temporal
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        pooled = e.mean(dim=2) if self.pool is None else self.pool(e)
        y = self.temporal(pooled).mean(dim=1)
        return self.fc(self.dropout(self.norm(y)))
