"""DiST's head (paper §3.4): adaptive pooling of the final integration tokens to one video token
``y_cls``, then either the contrastive text head (cosine/τ with frozen class-name text embeddings,
Eq. 7) or a linear classifier.

"AdaPooling" follows the authors' code (docs/dist.md "Decisions"): ``pooling_layers`` layers, each
a per-frame spatial query that cross-attends over that frame's N+1 tokens (+ MLP), then a video
query that cross-attends over the T per-frame tokens plus a learned temporal position embedding
(+ MLP); the video token is added to a projection of the frozen encoder's last-layer class token
averaged over time, layer-normed, and projected to the text embedding width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn


def _mlp(dim: int, ratio: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim * ratio), QuickGELU(), nn.Linear(dim * ratio, dim))


class CrossAttention(nn.Module):
    """``MHA(LN(q), LN(kv), LN(kv))``: one LayerNorm for queries and keys, as the authors' block."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, max(1, dim // 64), batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        kv = self.norm(kv)
        return self.attn(self.norm(q), kv, kv, need_weights=False)[0]


class AdaPoolingLayer(nn.Module):
    def __init__(self, dim: int, frames: int):
        super().__init__()
        self.spatial_attn = CrossAttention(dim)
        self.spatial_norm = nn.LayerNorm(dim)
        self.spatial_mlp = _mlp(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, frames, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.temporal_attn = CrossAttention(dim)
        self.temporal_norm = nn.LayerNorm(dim)
        self.temporal_mlp = _mlp(dim)

    def forward(self, tokens: torch.Tensor, frame_q: torch.Tensor, video_q: torch.Tensor):
        """tokens (B·T, N+1, D); frame_q (B·T, 1, D); video_q (B, 1, D) → updated (frame_q, video_q)."""
        frame_q = frame_q + self.spatial_attn(frame_q, tokens)
        frame_q = frame_q + self.spatial_mlp(self.spatial_norm(frame_q))
        B = video_q.shape[0]
        frames = frame_q.reshape(B, -1, frame_q.shape[-1]) + self.pos_embed.to(frame_q.dtype)
        video_q = video_q + self.temporal_attn(video_q, frames)
        video_q = video_q + self.temporal_mlp(self.temporal_norm(video_q))
        return frame_q, video_q


class DiSTHead(nn.Module):
    """Final tokens (B, T, N+1, D) and the frozen last-layer class tokens (B, T, C) → video features
    (B, out_dim): ``out_dim`` = the text embedding width (text head) or D (linear head)."""

    def __init__(self, dim: int, backbone_width: int, frames: int, layers: int, out_dim: int | None,
                 dropout: float = 0.0):
        super().__init__()
        self.frame_query = nn.Parameter(torch.zeros(1, 1, dim))
        self.video_query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.frame_query, std=0.02)
        nn.init.trunc_normal_(self.video_query, std=0.02)
        self.layers = nn.ModuleList(AdaPoolingLayer(dim, frames) for _ in range(layers))
        self.spatial_cls = nn.Linear(backbone_width, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Parameter(torch.randn(dim, out_dim) * dim ** -0.5) if out_dim else None

    def forward(self, tokens: torch.Tensor, clip_cls: torch.Tensor) -> torch.Tensor:
        B, T, L, D = tokens.shape
        flat = tokens.reshape(B * T, L, D)
        frame_q = self.frame_query.to(tokens.dtype).expand(B * T, 1, D)
        video_q = self.video_query.to(tokens.dtype).expand(B, 1, D)
        for layer in self.layers:
            frame_q, video_q = layer(flat, frame_q, video_q)
        y = self.norm(video_q[:, 0] + self.spatial_cls(clip_cls.mean(dim=1)))
        y = self.dropout(y)
        return y @ self.proj if self.proj is not None else y


def cosine_logits(video: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale · cos(video_b, text_k)`` (B, K): Eq. 7's sim(·,·)/τ."""
    return scale * F.normalize(video.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t()
