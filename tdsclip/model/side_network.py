"""The trainable side network of TDS-CLIP (docs/model.md §3): SME stems, per-layer side connections and
side blocks (temporal branch + TD-Adapter, CLS-shift attention, MLP).

Layout: the side stream ``s`` is tokens ``(B, T, N, d)`` (channels last, patches row-major), which
is what the tds_kernels ops take and what ``(B, d, T, h, w)`` is once permuted, so BatchNorm3d /
1×1×1 Conv3d / depthwise temporal Conv3d are computed on it directly (see ``layers.py``).

Initialisation follows the published TDS-CLIP code (which inherits it from Side4Video / CLIP); each
choice is commented where it is made. Where that code leaves a layer alone, PyTorch's default init
is used, as there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import tds_kernels

from .layers import (DropPath, TokenBatchNorm, checkpoint_side_block, lean_batchnorm_linear, lean_gelu_linear,
                     lean_layernorm_linear, lean_side_connection, lean_temporal_dwconv, pointwise,
                     temporal_dwconv)

# The published side block scales its output projections by (2 · 12)^-0.5, CLIP's
# "proj_std = width^-0.5 · (2 · layers)^-0.5" with the layer count hard-coded to 12 (also for the
# 24-layer ViT-L/14 configs). Kept as published.
PUBLISHED_INIT_DEPTH = 12


def side_attention(x: torch.Tensor, attn: nn.MultiheadAttention) -> torch.Tensor:
    """Multi-head attention of the side block: queries are the patch rows ``x[:, 1:]``, keys and values
    all rows (CLS first). x is (M, N+1, d), already layer-normed; returns (M, N, d). Uses the
    parameters of ``attn`` (an ``nn.MultiheadAttention``, same math as calling it with
    ``query=x[:, 1:], key=value=x``) through ``scaled_dot_product_attention``, which does not keep
    the attention matrix for backward."""
    M, L, d = x.shape
    heads = attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = F.linear(x[:, 1:], w[:d], None if b is None else b[:d])
    kv = F.linear(x, w[d:], None if b is None else b[d:])
    k, v = kv.chunk(2, dim=-1)
    q = q.view(M, L - 1, heads, d // heads).transpose(1, 2)
    k = k.reshape(M, L, heads, d // heads).transpose(1, 2)
    v = v.reshape(M, L, heads, d // heads).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v)  # (M, heads, N, d/heads)
    o = o.transpose(1, 2).reshape(M, L - 1, d)
    return F.linear(o, attn.out_proj.weight, attn.out_proj.bias)


class SideConnection(nn.Module):
    """``p = Linear_{C→d}(LayerNorm_C(X_l))`` on all N+1 tokens of the frozen block output X_l."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)  # published: ones / zeros (the default)
        # published: nn.Linear's default init (weight and bias). The N(0, (2d)^-0.5) init in that code is
        # applied to the text tower's side_linears, which the video model never uses (docs/model.md §7).
        self.proj = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, lean: bool = False) -> torch.Tensor:
        if lean and not x.requires_grad:
            return lean_layernorm_linear(x, self.norm, self.proj)
        return self.proj(self.norm(x.to(self.norm.weight.dtype)))

    def mix(self, s: torch.Tensor, x: torch.Tensor, lean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(0.5 s + 0.5 p[:, :, 1:], p[:, :, 0])`` with p = forward(x) viewed (B, T, N+1, d): the side
        connection on the patch rows of s (B, T, N, d) and the CLS row that goes to the block."""
        if lean and not x.requires_grad:
            return lean_side_connection(s, x, self.norm, self.proj)
        B, T, N, d = s.shape
        p = self(x).view(B, T, N + 1, d)
        return 0.5 * s + 0.5 * p[:, :, 1:], p[:, :, 0]


class SideBlock(nn.Module):
    """One side block (docs/model.md §3) on ``s`` (B, T, N, d) with the CLS row ``p_cls`` (B, T, d) of the
    side connection and the shared position embedding ``pos`` (N, d)."""

    def __init__(self, dim: int, reduction: int = 16, pool_kernel: int = 3, td_variant: str = "gated",
                 drop_path: float = 0.0, backend: str | None = None):
        super().__init__()
        if dim % 64:
            raise ValueError(f"SideBlock: dim must be a multiple of 64 (heads of width 64), got {dim}")
        self.dim = dim
        # 1. temporal branch: BN3d → Conv1x1x1 → DWConv(3,1,1) → Conv1x1x1 (all with bias, no activation),
        #    then the TD-Adapter. The published init loop names "pw_conv*"/"dw_conv*", which match no
        #    parameter of these convs, so they keep PyTorch's default init; so do we. BN: ones / zeros.
        self.temporal_norm = TokenBatchNorm(dim)
        self.temporal_in = nn.Conv3d(dim, dim, 1)
        self.temporal_dw = nn.Conv3d(dim, dim, (3, 1, 1), padding=(1, 0, 0), groups=dim)
        self.temporal_out = nn.Conv3d(dim, dim, 1)
        # TD-Adapter: default init of its convs (as the published SAModule) and BN ones / zeros.
        self.td_adapter = tds_kernels.TDAdapter(dim, reduction=reduction, kernel_size=pool_kernel,
                                                variant=td_variant, backend=backend)
        # 2. attention: LayerNorm(d), d/64 heads; published init: in_proj ~ N(0, d^-0.5),
        #    out_proj ~ N(0, d^-0.5 · (2·12)^-0.5), biases zero (nn.MultiheadAttention's default).
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, dim // 64, batch_first=True)
        proj_std = dim ** -0.5 * (2 * PUBLISHED_INIT_DEPTH) ** -0.5
        nn.init.normal_(self.attn.in_proj_weight, std=dim ** -0.5)
        nn.init.normal_(self.attn.out_proj.weight, std=proj_std)
        # 3. MLP: BN3d → Linear(d, 4d) → GELU (exact) → Linear(4d, d); published init
        #    fc1 ~ N(0, (2d)^-0.5), fc2 ~ N(0, d^-0.5 · (2·12)^-0.5), biases nn.Linear's default.
        self.mlp_norm = TokenBatchNorm(dim)
        self.mlp_fc1 = nn.Linear(dim, 4 * dim)
        self.mlp_fc2 = nn.Linear(4 * dim, dim)
        nn.init.normal_(self.mlp_fc1.weight, std=(2 * dim) ** -0.5)
        nn.init.normal_(self.mlp_fc2.weight, std=proj_std)
        self.drop_path = DropPath(drop_path)
        self.backend = backend
        self.keep_hidden = False  # memory_mode "fast": the MLP keeps its pre-GELU hidden tensor

    @property
    def lean(self) -> bool:
        """The memory-lean BN→Linear of the temporal branch (everything but the reference model)."""
        return self.backend != "reference"

    def set_backend(self, backend: str | None) -> None:
        """``None``: fused tds_kernels ops (automatic backend) and the memory-lean BN→Linear and MLP;
        ``"reference"``: plain PyTorch layers everywhere. Parameters are unaffected."""
        self.td_adapter.backend = backend
        self.backend = backend

    def temporal_branch(self, s: torch.Tensor) -> torch.Tensor:
        """``u = Conv1x1x1(DWConv(3,1,1)(Conv1x1x1(BN3d(s))))`` on tokens (B, T, N, d)."""
        if self.lean:
            v = lean_batchnorm_linear(s, self.temporal_norm, self.temporal_in.weight.flatten(1), self.temporal_in.bias)
            v = lean_temporal_dwconv(v, self.temporal_dw.weight, self.temporal_dw.bias)
        else:
            v = temporal_dwconv(pointwise(self.temporal_norm(s), self.temporal_in), self.temporal_dw)
        return pointwise(v, self.temporal_out)

    def forward(self, s: torch.Tensor, p_cls: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        B, T, N, d = s.shape
        # 1. s = s + TDAdapter(u): the adapter's output already contains u (out = u + u·gate).
        s = s + self.drop_path(self.td_adapter(self.temporal_branch(s)))
        # 2. CLS shift, concat in front, position embedding on patch rows only, LN, attention with
        #    patch queries; the residual adds to s, which never receives the position embedding.
        cls = tds_kernels.cls_token_shift(p_cls, backend=self.backend)
        x = torch.cat([cls.unsqueeze(2).to(s.dtype), s + pos.to(s.dtype)], dim=2)  # (B, T, N+1, d)
        x = self.attn_norm(x)
        s = s + self.drop_path(side_attention(x.view(B * T, N + 1, d), self.attn).view(B, T, N, d))
        # 3. MLP with a BN3d in front.
        return s + self.drop_path(self.mlp(s))

    def mlp(self, s: torch.Tensor) -> torch.Tensor:
        """``Linear_{4d→d}(GELU(Linear_{d→4d}(BN3d(s))))``; tds_kernels.side_mlp chooses how it runs (plain
        layers for the reference model, else the fused op or the lean autograd functions). ``keep_hidden``
        (memory_mode "fast") picks the lean functions even with a kernel backend: keeping h spares the
        backward the recomputation of Linear1 (a GEMM) and BN."""
        if self.keep_hidden and self.lean:
            h = lean_batchnorm_linear(s, self.mlp_norm, self.mlp_fc1.weight, self.mlp_fc1.bias)
            return lean_gelu_linear(h, self.mlp_fc2)
        return tds_kernels.side_mlp(s, self.mlp_norm, self.mlp_fc1, self.mlp_fc2, backend=self.backend)


class SideNetwork(nn.Module):
    """Stems + L (side connection, side block) pairs + the shared position embedding.

    :meth:`stem_tokens` gives the initial stream from the clip; :meth:`layer` consumes the frozen block
    output X_l of layer l. The model interleaves them with the backbone blocks.
    """

    def __init__(self, num_layers: int, width: int, patch_size: int, grid: tuple[int, int], dim: int = 320,
                 alpha: float = 0.5, reduction: int = 16, pool_kernel: int = 3, stem_padding: str = "published",
                 td_variant: str = "gated", drop_path: float = 0.0, mean=None, std=None,
                 backend: str | None = None, grad_checkpoint: bool = False):
        super().__init__()
        self.dim, self.grid, self.grad_checkpoint = dim, tuple(grid), grad_checkpoint
        stem_kwargs = {} if mean is None else dict(mean=mean, std=std)
        # SME-Adapter stems: PyTorch's default Conv3d init and BN ones / zeros, as published.
        self.stem = tds_kernels.SMEStem(dim, patch_size, alpha=alpha, padding=stem_padding, backend=backend,
                                        **stem_kwargs)
        self.connections = nn.ModuleList(SideConnection(width, dim) for _ in range(num_layers))
        # drop-path rate grows linearly over depth (the usual stochastic-depth rule); 0 by default.
        rates = [drop_path * i / (num_layers - 1) for i in range(num_layers)] if num_layers > 1 else [drop_path]
        self.blocks = nn.ModuleList(
            SideBlock(dim, reduction, pool_kernel, td_variant, rates[i], backend) for i in range(num_layers))
        # One position embedding (N, d) shared by all blocks, init N(0, 0.01) (docs/model.md §3, published).
        self.pos_embed = nn.Parameter(torch.empty(grid[0] * grid[1], dim))
        nn.init.normal_(self.pos_embed, std=0.01)
        self.lean = backend != "reference"

    def set_memory_mode(self, mode: str) -> None:
        """"lean" or "fast" (see tdsclip.config.MEMORY_MODES): what the fused side MLPs keep for backward."""
        from ..config import MEMORY_MODES

        if mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, got {mode!r}")
        for blk in self.blocks:
            blk.keep_hidden = mode == "fast"

    def set_backend(self, backend: str | None) -> None:
        self.stem.backend = backend
        for blk in self.blocks:
            blk.set_backend(backend)
        self.lean = backend != "reference"

    def stem_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """clips (B, T, 5, 3, H, W) → s (B, T, N, d)."""
        s = self.stem(clips)
        if s.shape[2] != self.grid[0] * self.grid[1]:
            raise ValueError(f"SideNetwork: the stem made {s.shape[2]} tokens, the backbone grid has "
                             f"{self.grid[0]}x{self.grid[1]}")
        return s

    def _layer(self, index: int, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s, p_cls = self.connections[index].mix(s, x, lean=self.lean)  # the CLS row goes to the block
        return self.blocks[index](s, p_cls, self.pos_embed)

    def layer(self, index: int, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Side connection + side block ``index``: s (B, T, N, d), x = X_l (B·T, N+1, C) → new s."""
        if self.grad_checkpoint and torch.is_grad_enabled():
            return checkpoint_side_block(self._layer, self.blocks[index], index, s, x)
        return self._layer(index, s, x)
