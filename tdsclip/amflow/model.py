"""``AMFlowModel``: a frozen image model with AM flow, scaled parallel adapters and per-block temporal
modules (docs/amflow.md), and ``build(config)`` for the architecture registry (``model.arch: amflow``)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..model.layers import checkpoint_side_block
from ..model.network import check_clips
from .adapters import AligningEncoder, ScaledParallelAdapter
from .backbones import FrozenImageModel, build_image_model
from .config import AMFlowConfig
from .flow import am_flow, attention_distribution, column_logits, normalise_flow
from .temporal import SlotPool, TemporalHead, TokenPool, build_temporal


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fused: bool, need_columns: bool):
    """Self-attention ``(M, H, L, d)`` → (output ``(M, H, L, d)``, column sums of ``q kᵀ/√d`` ``(M, H, L)``
    or None). ``fused``: SDPA (any fused kernel) and the columns as ``(Σ_i q_i)·k_j``; otherwise the
    explicit ``L × L`` map, whose column sums are taken directly (the reference)."""
    if fused:
        o = F.scaled_dot_product_attention(q, k, v)
        return o, (column_logits(q, k) if need_columns else None)
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    o = torch.softmax(logits.float(), dim=-1).to(v.dtype) @ v
    return o, (logits.sum(dim=-2) if need_columns else None)


class BlockAdapters(nn.Module):
    """What AM flow adds to one frozen block: the MHSA and MLP adapters, the optional aligning
    encoder, and one temporal head per adapter."""

    def __init__(self, config: AMFlowConfig, width: int, heads: int, tokens: int):
        super().__init__()
        r, h = config.resolved_adapter_dim, config.resolved_temporal_dim
        flow_channels = 1 if config.am_heads == "mean" else heads
        self.attn_adapter = ScaledParallelAdapter(width + flow_channels, r, width, config.adapter_scale)
        self.mlp_adapter = ScaledParallelAdapter(width, r, width, config.adapter_scale)
        self.aligner = (AligningEncoder(width, config.align_heads, config.align_layers, config.align_mlp_ratio)
                        if config.align else None)
        self.attn_head = self._head(config, tokens, r, h)
        self.mlp_head = self._head(config, tokens, r, h)

    @staticmethod
    def _head(config: AMFlowConfig, tokens: int, r: int, h: int) -> TemporalHead:
        """Token pooling → temporal module → classifier, for one adapter's ``E`` of width ``r``."""
        pool, in_dim = None, r
        if config.token_pool == "learned":
            pool = TokenPool(tokens, r)
        elif config.token_pool == "slots":
            pool, in_dim = SlotPool(tokens, config.token_slots), r * config.token_slots
        temporal = build_temporal(config.temporal, in_dim, h, config.temporal_layers, config.temporal_heads,
                                  config.tcn_kernel)
        return TemporalHead(temporal, h, config.num_classes, config.head_dropout, pool)


class AMFlowModel(nn.Module):
    """AM flow: clips ``(B, T, 5, 3, H, W)`` → logits ``(B, num_classes)``.

    The centre frame of each segment (window index 2) goes through the frozen image model. In each
    adapted block ``i`` (``config.blocks``, all by default), with ``h = LN1(X)``:

    * q, k, v of the frozen attention; ``a_t = softmax_j(Σ_i q_i·k_j/√d)`` per frame (heads averaged
      or kept), ``AMFlow_t = |a_t − a_{t+1}|`` (or against the aligned ``ã_{t+1}``), brought to unit RMS
      over the tokens and scaled by ``flow_gain·√(C/c)``;
    * ``X' = X + Attn(h) + s₁ W_up₁ E₁``, ``E₁ = ReLU(W_down₁ [h ‖ AMFlow])``;
    * ``X'' = X' + MLP(LN2(X')) + s₂ W_up₂ E₂``, ``E₂ = ReLU(W_down₂ LN2(X'))``;
    * ``E₁`` and ``E₂`` each give logits through a temporal head.

    The last frame's class token after the last block gives one more logit vector (LayerNorm +
    Linear); the output is the mean of all ``2·|blocks| + 1`` logit vectors.
    """

    def __init__(self, config: AMFlowConfig):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.backbone: FrozenImageModel = build_image_model(config)
        width, heads, layers = self.backbone.width, self.backbone.num_heads, self.backbone.num_layers
        blocks = list(range(layers)) if config.blocks is None else list(config.blocks)
        if blocks[-1] >= layers:
            raise ValueError(f"blocks: {config.backbone} has {layers} blocks (0..{layers - 1}), got {blocks}")
        tokens = self.backbone.num_tokens(config.resolved_image_size)
        self.adapters = nn.ModuleDict({str(i): BlockAdapters(config, width, heads, tokens) for i in blocks})
        self.head_norm = nn.LayerNorm(width)
        self.head_fc = nn.Linear(width, config.num_classes)

    # ------------------------------------------------------------------ switches (as TDSCLIP)
    @property
    def fused_ops(self) -> bool:
        return self.config.fused_ops

    def set_fused_ops(self, enabled: bool) -> "AMFlowModel":
        self.config.fused_ops = bool(enabled)
        return self

    @property
    def grad_checkpoint(self) -> bool:
        return self.config.grad_checkpoint

    def set_grad_checkpoint(self, enabled: bool) -> "AMFlowModel":
        self.config.grad_checkpoint = bool(enabled)
        return self

    def train(self, mode: bool = True) -> "AMFlowModel":
        super().train(mode)
        self.backbone.train(False)
        return self

    # ------------------------------------------------------------------ forward
    def check_clips(self, clips: torch.Tensor) -> None:
        check_clips(clips, self.config.resolved_image_size, "AMFlowModel")

    def flow(self, index: int, q: torch.Tensor, k: torch.Tensor, columns: torch.Tensor, T: int) -> torch.Tensor:
        """AM flow of block ``index`` ``(M, L, c)`` from its q, k ``(M, H, L, d)`` and column logits."""
        M, H, L, d = k.shape
        B = M // T
        mode = self.config.am_heads
        a = attention_distribution(columns, mode).reshape(B, T, L, -1)
        aligner = self.adapters[str(index)].aligner
        a_next = None
        if aligner is not None and T > 1:
            k_frames = self.backbone.merge_heads(k).reshape(B, T, L, H * d)
            k_now, k_next = k_frames[:, :-1].reshape(-1, L, H * d), k_frames[:, 1:].reshape(-1, L, H * d)
            k_aligned = aligner(k_now, k_next).reshape(-1, L, H, d).transpose(1, 2)
            q_next = q.reshape(B, T, H, L, d)[:, 1:].reshape(-1, H, L, d)
            if self.config.fused_ops:
                col_next = column_logits(q_next, k_aligned)
            else:
                col_next = ((q_next @ k_aligned.transpose(-2, -1)) / math.sqrt(d)).sum(dim=-2)
            a_next = attention_distribution(col_next, mode).reshape(B, T - 1, L, -1)
        flow = normalise_flow(am_flow(a, a_next))  # unit RMS over the tokens
        # × √(C/c): with a random W_down row the c flow channels then weigh as much as the C channels
        # of LN(X) together; × flow_gain: flow_gain² times as much (docs/amflow.md §2)
        return (flow * (self.config.flow_gain * math.sqrt(H * d / flow.shape[-1]))).reshape(M, L, -1)

    def block(self, index: int, x: torch.Tensor, T: int):
        """Frozen block ``index`` on tokens ``(M, L, C)`` (M = B·T) with its adapters, if any →
        (tokens, [logits of the MHSA adapter's head, of the MLP adapter's head])."""
        bb, fused = self.backbone, self.config.fused_ops
        extra = self.adapters[str(index)] if str(index) in self.adapters else None
        h = bb.norm1(index, x)
        q, k, v = bb.qkv(index, h)
        o, columns = attend(q, k, v, fused, need_columns=extra is not None)
        x = x + bb.attn_out(index, o)
        if extra is None:
            return x + bb.mlp_out(index, bb.norm2(index, x)), []
        flow = self.flow(index, q, k, columns, T).to(h.dtype)
        res, e_attn = extra.attn_adapter(torch.cat([h, flow], dim=-1))
        x = x + res
        h2 = bb.norm2(index, x)
        res, e_mlp = extra.mlp_adapter(h2)
        x = x + bb.mlp_out(index, h2) + res
        M, L = x.shape[:2]
        logits = [extra.attn_head(e_attn.reshape(M // T, T, L, -1)), extra.mlp_head(e_mlp.reshape(M // T, T, L, -1))]
        return x, logits

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.check_clips(clips)
        B, T, _, _, H, W = clips.shape
        x = self.backbone.embed(clips[:, :, 2].reshape(B * T, 3, H, W))  # centre frames, no grad
        logits = []
        for index in range(self.backbone.num_layers):
            if self.config.grad_checkpoint and torch.is_grad_enabled():
                x, out = checkpoint_side_block(self.block, self, index, x, T)  # activation accounting sees x
            else:
                x, out = self.block(index, x, T)
            logits += out
        cls_last = x.reshape(B, T, x.shape[1], x.shape[2])[:, -1, 0]  # the final frame's class token
        logits.append(self.head_fc(self.head_norm(cls_last)))
        return torch.stack(logits).mean(dim=0)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        c = self.config
        return (f"backbone={c.backbone}, pretrained={c.pretrained}, blocks={c.blocks or 'all'}, temporal={c.temporal}, "
                f"align={c.align}, num_classes={c.num_classes}, fused_ops={c.fused_ops}")


def build(config: AMFlowConfig | dict) -> AMFlowModel:
    """The AM-flow model for ``config`` (an :class:`AMFlowConfig` or a dict of its fields)."""
    from ..archs import build_checked

    return build_checked(config, AMFlowConfig, AMFlowModel, "amflow.build: expected an AMFlowConfig")
