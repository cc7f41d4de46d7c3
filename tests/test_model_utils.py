"""Shared helpers of the model tests (no tests here): the tiny config, clips, and direct
implementations of docs/model.md §3's formulas written independently of tdsclip.model (explicit loops /
the layouts docs/model.md names), which the components are checked against."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tdsclip import TDSCLIPConfig


def tiny_config(**overrides) -> TDSCLIPConfig:
    base = dict(backbone="tiny", side_dim=64, num_classes=5, num_frames=3, reduction=16)
    base.update(overrides)
    return TDSCLIPConfig(**base)


def make_clips(batch: int = 2, frames: int = 3, size: int = 64, seed: int = 1, dtype=torch.uint8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (batch, frames, 5, 3, size, size), generator=g, dtype=torch.uint8)
    return clips if dtype == torch.uint8 else clips.to(dtype)


# ---------------------------------------------------------------------------------------------
# direct formulas of docs/model.md

def bn_train(x: torch.Tensor, bn, channel_dim: int) -> torch.Tensor:
    """Training-mode BatchNorm written out: per channel, biased batch statistics over all other dims."""
    dims = [d for d in range(x.dim()) if d != channel_dim % x.dim()]
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def cls_shift_direct(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, C): channels [:C/2] from frame t+1, [C/2:] from t-1, zeros past either end."""
    B, T, C = x.shape
    out = torch.zeros_like(x)
    for t in range(T):
        if t + 1 < T:
            out[:, t, : C // 2] = x[:, t + 1, : C // 2]
        if t - 1 >= 0:
            out[:, t, C // 2:] = x[:, t - 1, C // 2:]
    return out


def max_diff_direct(b: torch.Tensor, k: int) -> torch.Tensor:
    """b (B, C, T, ...): b - max over frames t-k//2..t+k//2 with -inf padding (= over frames that exist)."""
    T, r = b.shape[2], k // 2
    pooled = torch.stack([b[:, :, max(0, t - r): t + r + 1].amax(dim=2) for t in range(T)], dim=2)
    return b - pooled


def td_adapter_direct(u: torch.Tensor, td) -> torch.Tensor:
    """The TD-Adapter of docs/model.md §3 on u (B, T, N, d), training-mode BN, via the (B, d, T, N) layout."""
    x = u.permute(0, 3, 1, 2)
    b = bn_train(torch.einsum("oc,bctn->botn", td.down.weight.flatten(1), x), td.bn1, 1)
    m = max_diff_direct(b, td.kernel_size)
    if td.variant == "gated":
        m = 0.5 * m + 0.5 * m.mean(dim=1, keepdim=True)
    y = bn_train(torch.einsum("oc,bctn->botn", td.up.weight.flatten(1), m), td.bn2, 1)
    out = x + x * (torch.sigmoid(y) - 0.5) if td.variant == "gated" else x + y
    return out.permute(0, 2, 3, 1)


def side_block_direct(blk, s: torch.Tensor, p_cls: torch.Tensor, pos: torch.Tensor, grid) -> torch.Tensor:
    """docs/model.md §3's side block in the layouts it names: (B, d, T, h, w) with BatchNorm3d / Conv3d, and
    nn.MultiheadAttention with patch queries over CLS + patch keys (training-mode BN)."""
    B, T, N, d = s.shape
    h, w = grid

    def to5(t):
        return t.permute(0, 3, 1, 2).reshape(B, d, T, h, w)

    def to_tokens(t5):
        return t5.reshape(B, d, T, N).permute(0, 2, 3, 1)

    v = bn_train(to5(s), blk.temporal_norm, 1)
    v = F.conv3d(v, blk.temporal_in.weight, blk.temporal_in.bias)
    v = F.conv3d(v, blk.temporal_dw.weight, blk.temporal_dw.bias, padding=(1, 0, 0), groups=d)
    u = to_tokens(F.conv3d(v, blk.temporal_out.weight, blk.temporal_out.bias))
    s = s + td_adapter_direct(u, blk.td_adapter)
    cls = cls_shift_direct(p_cls)
    x = torch.cat([cls.unsqueeze(2), s + pos], dim=2).reshape(B * T, N + 1, d)
    x = F.layer_norm(x, (d,), blk.attn_norm.weight, blk.attn_norm.bias, blk.attn_norm.eps)
    a, _ = blk.attn(x[:, 1:], x, x, need_weights=False)
    s = s + a.reshape(B, T, N, d)
    v = to_tokens(bn_train(to5(s), blk.mlp_norm, 1))
    return s + blk.mlp_fc2(F.gelu(blk.mlp_fc1(v)))
