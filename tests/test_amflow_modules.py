"""AM flow's pieces against plain-PyTorch references written out here: the column sums of the
attention logits against the explicit attention map, the adjacent difference, the adapters, the
temporal modules and the aligning encoder (tdsclip/amflow, docs/amflow.md)."""
import math

import pytest
import torch
import torch.nn.functional as F

from tdsclip.amflow.adapters import AligningEncoder, ScaledParallelAdapter
from tdsclip.amflow.backbones import build_image_model
from tdsclip.amflow.config import AMFlowConfig
from tdsclip.amflow.flow import (am_flow, attention_distribution, column_logits, column_logits_explicit,
                                 normalise_flow, temporal_adjacent_absdiff)
from tdsclip.amflow.temporal import TCN, LSTMTemporal, SlotPool, TemporalHead, TokenPool, TransformerTemporal


def explicit_attention_logits(q, k):
    """The attention map before the softmax, entry by entry: X_A[i, j] = q_i · k_j / √d."""
    return torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])


# --------------------------------------------------------------------------------------------- AM flow

@pytest.mark.parametrize("shape", [(1, 1, 5, 8), (2, 3, 17, 16), (3, 12, 50, 64)])
def test_column_logits_match_the_explicit_attention_map(shape):
    q64 = torch.randn(shape, dtype=torch.float64)
    k64 = torch.randn(shape, dtype=torch.float64)
    want = explicit_attention_logits(q64, k64).sum(dim=-2)
    q, k = q64.float(), k64.float()
    got = column_logits(q, k)
    plain = column_logits_explicit(q, k)
    assert got.shape == shape[:-1]
    err_plain = (plain.double() - want).abs().max().item()
    err_got = (got.double() - want).abs().max().item()
    assert err_got <= 2 * err_plain + 1e-5, (err_got, err_plain)


def test_column_logits_non_contiguous_and_gradients():
    q = torch.randn(2, 17, 3, 8, dtype=torch.float64).transpose(1, 2).requires_grad_()  # (M, H, L, d) strided
    k = torch.randn(2, 17, 3, 8, dtype=torch.float64).transpose(1, 2).requires_grad_()
    w = torch.randn(2, 3, 17, dtype=torch.float64)
    (column_logits(q, k) * w).sum().backward()
    gq, gk = q.grad.clone(), k.grad.clone()
    q.grad = k.grad = None
    (explicit_attention_logits(q, k).sum(dim=-2) * w).sum().backward()
    torch.testing.assert_close(gq, q.grad)
    torch.testing.assert_close(gk, k.grad)


def test_column_logits_from_a_frozen_block_match_its_attention_map():
    """q, k taken from a real (tiny DINOv2) block; the map built the way timm's unfused path does."""
    model = build_image_model(AMFlowConfig(backbone="dinov2_tiny", align=False))
    x = model.embed(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    q, k, _ = model.qkv(0, model.norm1(0, x))
    attn = model.blocks[0].attn
    timm_map = (q * attn.scale) @ k.transpose(-2, -1)  # timm's pre-softmax attention logits
    torch.testing.assert_close(column_logits(q, k), timm_map.sum(dim=-2), rtol=1e-5, atol=1e-5)


def test_attention_distribution_mean_and_per_head():
    col = torch.randn(2, 3, 7)
    mean = attention_distribution(col, "mean")
    torch.testing.assert_close(mean, torch.softmax(col.mean(dim=1), dim=-1).unsqueeze(-1))
    per_head = attention_distribution(col, "per_head")
    torch.testing.assert_close(per_head, torch.softmax(col, dim=-1).transpose(1, 2))
    torch.testing.assert_close(per_head.sum(dim=1), torch.ones(2, 3))


@pytest.mark.parametrize("T", [1, 2, 5])
def test_adjacent_absdiff_against_a_loop(T):
    x = torch.randn(2, T, 7, 3)[:, :, :, ::1]
    want = torch.zeros_like(x)
    for t in range(T - 1):
        want[:, t] = (x[:, t] - x[:, t + 1]).abs()
    torch.testing.assert_close(temporal_adjacent_absdiff(x), want)
    torch.testing.assert_close(am_flow(x), want)
    with pytest.raises(ValueError, match=r"\(B, T, N, C\)"):
        temporal_adjacent_absdiff(x[0])


def test_am_flow_against_aligned_next_frame():
    a = torch.randn(2, 4, 5, 1)
    a_next = torch.randn(2, 3, 5, 1)
    out = am_flow(a, a_next)
    torch.testing.assert_close(out[:, :3], (a[:, :3] - a_next).abs())
    assert (out[:, 3] == 0).all()


def test_normalise_flow_unit_rms_zero_stays_zero_finite_gradient():
    flow = torch.rand(2, 3, 7, 2, dtype=torch.float64)
    flow[:, -1] = 0  # the last frame
    flow.requires_grad_()
    out = normalise_flow(flow)
    rms = out.square().mean(dim=2).sqrt()
    torch.testing.assert_close(rms[:, :-1], torch.ones_like(rms[:, :-1]))
    assert (out[:, -1] == 0).all()
    out.sum().backward()
    assert torch.isfinite(flow.grad).all()


# --------------------------------------------------------------------------------------------- adapters

def test_scaled_parallel_adapter_formula():
    ad = ScaledParallelAdapter(9, 5, 8, scale=0.3)
    assert (ad.up.weight == 0).all() and (ad.up.bias == 0).all() and ad.scale.item() == pytest.approx(0.3)
    with torch.no_grad():
        ad.up.weight.normal_()
        ad.up.bias.normal_()
    x = torch.randn(2, 6, 9)
    res, e = ad(x)
    e_ref = torch.clamp(x @ ad.down.weight.T + ad.down.bias, min=0)
    torch.testing.assert_close(e, e_ref)
    torch.testing.assert_close(res, 0.3 * (e_ref @ ad.up.weight.T + ad.up.bias))


def _mha(x, in_w, in_b, out_w, out_b, heads):
    M, L, C = x.shape
    q, k, v = (x @ in_w.T + in_b).view(M, L, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    att = torch.softmax(explicit_attention_logits(q, k), dim=-1)
    return (att @ v).transpose(1, 2).reshape(M, L, C) @ out_w.T + out_b


def _pre_norm_encoder_layer(layer, x, heads):
    """nn.TransformerEncoderLayer(norm_first=True, activation=gelu, dropout=0) written out."""
    a = layer.self_attn
    h = F.layer_norm(x, x.shape[-1:], layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    x = x + _mha(h, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight, a.out_proj.bias, heads)
    h = F.layer_norm(x, x.shape[-1:], layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    return x + F.gelu(h @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias


def test_aligning_encoder_against_written_out_transformer():
    enc = AligningEncoder(16, heads=4, layers=2, mlp_ratio=1.0).eval()
    with torch.no_grad():
        enc.frame_embed.normal_()
    k_now, k_next = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    x = torch.cat([k_now + enc.frame_embed[0], k_next + enc.frame_embed[1]], dim=1)
    for layer in enc.encoder.layers:
        x = _pre_norm_encoder_layer(layer, x, 4)
    torch.testing.assert_close(enc(k_now, k_next), x[:, 5:], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------- temporal modules

def _causal_conv_ref(conv, x):
    """y[:, o, t] = b[o] + Σ_taps W[o, :, tap] · x[:, :, t − (K−1−tap)·dilation] (zero before the start)."""
    B, C, T = x.shape
    K, dil = conv.kernel_size[0], conv.dilation[0]
    y = conv.bias.view(1, -1, 1).expand(B, -1, T).clone()
    for t in range(T):
        for tap in range(K):
            src = t - (K - 1 - tap) * dil
            if src >= 0:
                y[:, :, t] += x[:, :, src] @ conv.weight[:, :, tap].T
    return y


@pytest.mark.parametrize("levels,kernel,T", [(1, 2, 1), (2, 2, 5), (2, 3, 4)])
def test_tcn_against_a_loop(levels, kernel, T):
    tcn = TCN(6, 8, levels, kernel)
    x = torch.randn(2, T, 6)
    h = x.transpose(1, 2)
    for level in tcn.levels:
        y = torch.relu(_causal_conv_ref(level.conv2, torch.relu(_causal_conv_ref(level.conv1, h))))
        skip = h if isinstance(level.skip, torch.nn.Identity) else \
            torch.einsum("oc,bct->bot", level.skip.weight[:, :, 0], h) + level.skip.bias.view(1, -1, 1)
        h = torch.relu(y + skip)
    torch.testing.assert_close(tcn(x), h.transpose(1, 2), rtol=1e-5, atol=1e-5)
    # causal: changing the last frame leaves the earlier outputs unchanged
    x2 = x.clone()
    x2[:, -1] += 1
    torch.testing.assert_close(tcn(x2)[:, :-1], tcn(x)[:, :-1])


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_against_the_gate_equations(layers):
    mod = LSTMTemporal(6, 5, layers)
    x = torch.randn(2, 4, 6)
    seq = x
    for layer in range(layers):
        w_ih, w_hh = getattr(mod.lstm, f"weight_ih_l{layer}"), getattr(mod.lstm, f"weight_hh_l{layer}")
        b = getattr(mod.lstm, f"bias_ih_l{layer}") + getattr(mod.lstm, f"bias_hh_l{layer}")
        h = c = torch.zeros(2, 5)
        outs = []
        for t in range(seq.shape[1]):
            i, f, g, o = (seq[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        seq = torch.stack(outs, dim=1)
    torch.testing.assert_close(mod(x), seq, rtol=1e-5, atol=1e-5)


def test_transformer_temporal_against_written_out_encoder():
    mod = TransformerTemporal(6, 8, layers=1, heads=2).eval()
    with torch.no_grad():
        mod.pos.normal_()
    x = torch.randn(2, 3, 6)
    h = x @ mod.proj.weight.T + mod.proj.bias + mod.pos[:3]
    h = _pre_norm_encoder_layer(mod.encoder.layers[0], h, 2)
    torch.testing.assert_close(mod(x), h, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="at most 64 frames"):
        mod(torch.randn(1, 65, 6))


def test_temporal_head_pools_tokens_then_time():
    head = TemporalHead(torch.nn.Identity(), 6, 3)
    e = torch.randn(2, 4, 5, 6)
    y = e.mean(dim=2).mean(dim=1)
    want = F.layer_norm(y, (6,), head.norm.weight, head.norm.bias, head.norm.eps) @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head(e), want)


def test_slot_pool_against_a_loop():
    pool = SlotPool(5, 3)
    e = torch.randn(2, 4, 5, 6)
    want = torch.stack([sum(pool.weight[l, k] * e[:, :, l] for l in range(5)) for k in range(3)], dim=2)
    torch.testing.assert_close(pool(e), want.flatten(2))  # (B, T, K·r), slot-major
    with pytest.raises(ValueError, match="expected 5 tokens"):
        pool(torch.randn(2, 4, 6, 6))


def test_slot_pool_keeps_where_a_mean_loses_it():
    """Two frames with the same token vectors at swapped places: one pooled vector per channel
    (mean, or the learned pool at its mean initialisation) cannot tell them apart, K slots can."""
    e = torch.randn(1, 1, 5, 6)
    swapped = e[:, :, [1, 0, 2, 3, 4]]
    torch.testing.assert_close(e.mean(dim=2), swapped.mean(dim=2))
    torch.testing.assert_close(TokenPool(5, 6)(e), TokenPool(5, 6)(swapped))
    pool = SlotPool(5, 3)
    assert not torch.allclose(pool(e), pool(swapped))


def test_temporal_head_with_slots_feeds_the_slots_in_frame_order():
    pool = SlotPool(5, 2)
    tcn = TCN(2 * 6, 6, 1, 2)
    head = TemporalHead(tcn, 6, 3, pool=pool)
    e = torch.randn(2, 4, 5, 6)
    y = tcn(pool(e)).mean(dim=1)
    want = F.layer_norm(y, (6,), head.norm.weight, head.norm.bias, head.norm.eps) @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head(e), want)
    assert not torch.allclose(head(e), head(e.flip(1)))  # causal TCN: order matters


# --------------------------------------------------------------------------------------------- frozen blocks

@pytest.mark.parametrize("backbone", ["dinov2_tiny", "tiny"])
def test_block_from_parts_equals_the_library_block(backbone):
    model = build_image_model(AMFlowConfig(backbone=backbone, align=False))
    x = model.embed(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    for i in range(model.num_layers):
        q, k, v = model.qkv(i, model.norm1(i, x))
        y = x + model.attn_out(i, F.scaled_dot_product_attention(q, k, v))
        y = y + model.mlp_out(i, model.norm2(i, y))
        blk = model.blocks[i]
        with torch.no_grad():
            ref = blk(x) if backbone == "dinov2_tiny" or model.vit.batch_first else blk(x.transpose(0, 1)).transpose(0, 1)
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.block(i, x), ref, rtol=1e-5, atol=1e-5)
        x = ref
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
