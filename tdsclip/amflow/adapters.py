"""The trainable modules that sit inside the frozen blocks (docs/amflow.md §3): scaled parallel
adapters and the aligning encoder."""
from __future__ import annotations

import torch
from torch import nn


class ScaledParallelAdapter(nn.Module):
    """``E = ReLU(W_down x)`` and ``s · W_up E`` (He et al. 2022's scaled parallel adapter).

    The block adds ``s · W_up E`` beside the frozen sub-layer it runs in parallel with; ``E`` (the
    downsampled embedding) also feeds this adapter's temporal module. For the MHSA adapter ``x`` is
    ``[LN(X) ‖ AMFlow]`` (the paper's eq. 5), for the MLP adapter ``LN(X)``. ``W_up`` starts at zero so
    the model starts as the frozen image model; ``s`` is learnable, initialised to ``scale``."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, scale: float = 0.1):
        super().__init__()
        self.down = nn.Linear(in_dim, dim)
        self.up = nn.Linear(dim, out_dim)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``(..., in_dim)`` → (residual ``s · W_up E`` ``(..., out_dim)``, ``E`` ``(..., dim)``)."""
        e = torch.relu(self.down(x))
        return self.scale * self.up(e), e


class AligningEncoder(nn.Module):
    """Aligns frame t+1's keys to frame t before AM flow is taken (moving cameras).

    A transformer encoder (pre-norm, ``heads`` heads) over the ``2L`` keys of both frames
    ``[K_t ; K_{t+1}]`` (heads merged, ``(P, 2L, C)``); its second half is ``K̃_{t+1}``, frame t+1's
    keys expressed against frame t, from which ``ã_{t+1}`` is taken with frame t+1's queries. A
    learned frame embedding tells the two halves apart."""

    def __init__(self, width: int, heads: int = 12, layers: int = 1, mlp_ratio: float = 1.0):
        super().__init__()
        self.frame_embed = nn.Parameter(torch.zeros(2, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=max(1, int(round(width * mlp_ratio))),
                                           dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, k_now: torch.Tensor, k_next: torch.Tensor) -> torch.Tensor:
        """k_now, k_next ``(P, L, C)`` → aligned ``K̃_next`` ``(P, L, C)``."""
        L = k_now.shape[1]
        x = torch.cat([k_now + self.frame_embed[0], k_next + self.frame_embed[1]], dim=1)
        return self.encoder(x)[:, L:]
