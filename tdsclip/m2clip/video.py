"""M2-CLIP's video encoder: the frozen CLIP ViT with a TED-Adapter inside each of its last
``adapter_layers`` blocks, run *with* autograd (the adapters sit inside the backbone, so the frozen
blocks' activations are kept for backward; docs/m2clip.md §memory).

The ViT forward is written here over open_clip's vision-tower modules (conv1, embeddings, ln_pre, the
residual blocks' ln_1 / attn / ls_1 / ln_2 / mlp / ls_2, ln_post, proj) because the adapter goes between
a block's residual branches. The patch embedding is reused from TDS-CLIP's FrozenViT (no trainable
parameter comes before the first block, so it runs without autograd).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model.backbone import FrozenViT
from .adapters import FrameAdapter, TEDAdapter
from .config import M2CLIPConfig
from .towers import as_float


class VideoEncoder(nn.Module):
    """Centre frames ``(B, T, 3, H, W)`` (pixel values in [0, 255]) → ``(tokens CLS per frame (B, T, C),
    per-frame embeddings (B, T, E))``. ``backbone`` is frozen (eval mode always); ``adapters`` train."""

    def __init__(self, visual: nn.Module, mean, std, config: M2CLIPConfig, backend: str | None):
        super().__init__()
        self.backbone = FrozenViT(visual, mean, std)
        self.ln_post = visual.ln_post
        self.proj = visual.proj                      # (C, E) parameter, frozen
        self.ln_post.requires_grad_(False)
        self.proj.requires_grad_(False)
        n = self.backbone.num_layers
        first = n - min(config.adapter_layers, n)
        self.adapter_index = {i: i - first for i in range(first, n)}  # block -> adapter
        self.pre_attn = config.adapter_position == "pre_attn"
        self.adapters = nn.ModuleList(
            TEDAdapter(self.backbone.width, config.adapter_width, config.grid, config.te_kernel, config.td_kernel,
                       backend) for _ in range(n - first))
        self.frame_adapter = FrameAdapter(int(self.proj.shape[1])) if config.frame_adapter else None
        self.grad_checkpoint = config.grad_checkpoint

    def train(self, mode: bool = True) -> "VideoEncoder":
        super().train(mode)
        self.backbone.train(False)
        return self

    def set_backend(self, backend: str | None) -> None:
        for a in self.adapters:
            a.backend = backend

    def _adapt(self, index: int, x: torch.Tensor, T: int) -> torch.Tensor:
        a = self.adapters[self.adapter_index[index]]
        z = as_float(x, a)
        out = a(z.reshape(-1, T, *z.shape[1:]))
        return out.reshape(x.shape).to(x.dtype)

    def block(self, index: int, x: torch.Tensor, T: int) -> torch.Tensor:
        """Frozen block ``index`` with its adapter on batch-first tokens (B*T, L, C)."""
        blk = self.backbone.resblocks[index]
        adapted = index in self.adapter_index
        if adapted and self.pre_attn:
            x = self._adapt(index, x, T)
        q = blk.ln_1(x)
        if not self.backbone.batch_first:
            q = q.transpose(0, 1)
        attn = blk.attention(q)
        if not self.backbone.batch_first:
            attn = attn.transpose(0, 1)
        x = x + blk.ls_1(attn)
        if adapted and not self.pre_attn:
            x = self._adapt(index, x, T)
        return x + blk.ls_2(blk.mlp(blk.ln_2(x)))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = frames.shape[:2]
        x = self.backbone.embed(frames.flatten(0, 1))          # (BT, L, C), no autograd needed
        for i in range(self.backbone.num_layers):
            if self.grad_checkpoint and torch.is_grad_enabled():
                x = checkpoint(self.block, i, x, T, use_reentrant=False)
            else:
                x = self.block(i, x, T)
        cls = x[:, 0]                                          # (BT, C)
        emb = self.ln_post(cls) @ self.proj                    # (BT, E)
        emb = emb.reshape(B, T, -1)
        if self.frame_adapter is not None:
            emb = self.frame_adapter(as_float(emb, self.frame_adapter))
        return cls.reshape(B, T, -1), emb
