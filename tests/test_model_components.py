"""Each part of the model against a direct implementation of its docs/model.md §2–3 formula."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tds_kernels
from tdsclip.config import TINY_VISION_CFG
from tdsclip import build_model
from tdsclip.model import FrozenViT
from tdsclip.model.backbone import normalise_images
from tdsclip.model.layers import (TokenBatchNorm, lean_batchnorm_linear, lean_gelu_linear, lean_layernorm_linear,
                                  lean_side_connection, lean_temporal_dwconv,
                                  pointwise, temporal_dwconv)
from tdsclip.model.side_network import SideBlock, side_attention
from tdsclip.model.summary import saved_tensor_recorder
from test_model_utils import (bn_train, cls_shift_direct, make_clips, max_diff_direct, side_block_direct,
                              td_adapter_direct, tiny_config)

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")
BACKENDS = ["reference", None]  # None: whatever the automatic (fused) choice is on this machine


def _tol(backend, dtype):
    return 1e-10 if dtype == torch.float64 and backend == "reference" else 2e-4


def test_frozen_vit_outputs_match_open_clip_intermediates():
    from open_clip.model import _build_vision_tower

    visual = _build_vision_tower(64, dict(TINY_VISION_CFG), quick_gelu=False)
    vit = FrozenViT(visual)
    images = make_clips(3, 1)[:, 0, 2]
    outs = vit(images)
    ref = visual.forward_intermediates(normalise_images(images, vit.mean, vit.std, torch.float32),
                                       output_fmt="NLC", output_extra_tokens=True, intermediates_only=True)
    assert len(outs) == TINY_VISION_CFG["layers"]
    for out, cls, patches in zip(outs, ref["image_intermediates_prefix"], ref["image_intermediates"]):
        torch.testing.assert_close(out, torch.cat([cls, patches], dim=1), rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in vit.parameters())
    assert not hasattr(vit, "ln_post") and not hasattr(vit, "proj")


def test_token_batchnorm_is_batchnorm3d_on_the_5d_view():
    B, T, h, w, d = 2, 3, 2, 3, 8
    tok = TokenBatchNorm(d)
    ref = nn.BatchNorm3d(d)
    with torch.no_grad():
        tok.weight.uniform_(0.5, 2), tok.bias.uniform_(-1, 1)
    ref.load_state_dict(tok.state_dict())
    s = torch.randn(B, T, h * w, d, requires_grad=True)
    s5 = s.detach().permute(0, 3, 1, 2).reshape(B, d, T, h, w).requires_grad_()
    out, out5 = tok(s), ref(s5)
    torch.testing.assert_close(out, out5.reshape(B, d, T, h * w).permute(0, 2, 3, 1))
    torch.testing.assert_close(out, bn_train(s, tok, -1))
    (out * torch.arange(d)).sum().backward()
    (out5 * torch.arange(d).view(1, d, 1, 1, 1)).sum().backward()
    torch.testing.assert_close(s.grad, s5.grad.reshape(B, d, T, h * w).permute(0, 2, 3, 1))
    for a, b in zip(tok.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b)
    assert isinstance(tok, nn.BatchNorm3d) and set(tok.state_dict()) == set(ref.state_dict())


def test_pointwise_and_temporal_dwconv_match_conv3d():
    B, T, h, w, d = 2, 4, 2, 2, 6
    dw = nn.Conv3d(d, d, (3, 1, 1), padding=(1, 0, 0), groups=d)
    pw = nn.Conv3d(d, 5, 1)
    s = torch.randn(B, T, h * w, d, dtype=torch.float64)
    dw.double(), pw.double()
    s5 = s.permute(0, 3, 1, 2).reshape(B, d, T, h, w)
    torch.testing.assert_close(temporal_dwconv(s, dw), dw(s5).reshape(B, d, T, h * w).permute(0, 2, 3, 1))
    torch.testing.assert_close(pointwise(s, pw), pw(s5).reshape(B, 5, T, h * w).permute(0, 2, 3, 1))
    # zero padding: the first frame sees no t-1 term, the last no t+1 term
    one = torch.zeros(1, 3, 1, d, dtype=torch.float64)
    one[:, 1] = 1.0
    out = temporal_dwconv(one, dw) - dw.bias
    w_ = dw.weight.view(d, 3)
    torch.testing.assert_close(out[0, :, 0], torch.stack([w_[:, 2], w_[:, 1], w_[:, 0]]))


@pytest.mark.parametrize("T", [1, 2, 5])
@pytest.mark.parametrize("contiguous", [True, False])
def test_lean_temporal_dwconv_matches_conv3d_within_twice_plain_error(T, contiguous):
    """Value and gradients (x, weight, bias) of the lean depthwise temporal conv against Conv3d in float64, and its
    float32 error at most twice the plain elementwise form's (T = 1: no neighbouring frames at all)."""
    torch.manual_seed(T)
    B, N, d = 2, 7, 12
    dw = nn.Conv3d(d, d, (3, 1, 1), padding=(1, 0, 0), groups=d).double()
    x0 = torch.randn(B, T, N, d, dtype=torch.float64) * 2 + 1
    g = torch.randn(B, T, N, d, dtype=torch.float64)

    def run(form, dt):
        conv = copy.deepcopy(dw).to(dt)
        x = x0.to(dt).detach().clone()
        if not contiguous:  # a (B, N, T, d) storage seen as (B, T, N, d)
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        x.requires_grad_()
        if form == "conv3d":
            out = conv(x.permute(0, 3, 1, 2).unsqueeze(-1)).squeeze(-1).permute(0, 2, 3, 1)
        elif form == "plain":
            out = temporal_dwconv(x, conv)
        else:
            out = lean_temporal_dwconv(x, conv.weight, conv.bias)
        (out * g.to(dt)).sum().backward()
        return [out, x.grad, conv.weight.grad, conv.bias.grad]

    ref = run("conv3d", torch.float64)
    for r, l in zip(ref, run("lean", torch.float64)):
        torch.testing.assert_close(l, r)
    for r, p, l in zip(ref, run("plain", torch.float32), run("lean", torch.float32)):
        err_plain, err_lean = (p.double() - r).abs().max().item(), (l.double() - r).abs().max().item()
        assert err_lean <= 2 * err_plain + 1e-6 * r.abs().max().item(), (err_lean, err_plain)
    with pytest.raises(ValueError, match="weight must"):
        lean_temporal_dwconv(x0, dw.weight[:-1], dw.bias)


def test_side_attention_is_multihead_attention_with_patch_queries():
    d, heads = 128, 2
    attn = nn.MultiheadAttention(d, heads, batch_first=True).double()
    nn.init.normal_(attn.in_proj_bias), nn.init.normal_(attn.out_proj.bias)
    x = torch.randn(3, 5, d, dtype=torch.float64)
    ref, _ = attn(x[:, 1:], x, x, need_weights=False)
    torch.testing.assert_close(side_attention(x, attn), ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cls_shift_takes_neighbours_and_zeros_past_the_ends(backend):
    x = torch.randn(2, 4, 64, requires_grad=True)
    out = tds_kernels.cls_token_shift(x, backend=backend)
    torch.testing.assert_close(out, cls_shift_direct(x.detach()))
    assert (out[:, -1, :32] == 0).all() and (out[:, 0, 32:] == 0).all()
    out.backward(torch.ones_like(out))
    expected = torch.ones_like(x)
    expected[:, 0, :32] = 0  # frame 0's first half is nobody's t+1
    expected[:, -1, 32:] = 0  # the last frame's second half is nobody's t-1
    torch.testing.assert_close(x.grad, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_difference_pads_with_minus_infinity(backend):
    # all-negative values: zero padding would make the edge frames' max 0; -inf padding ignores it
    x = -torch.rand(2, 5, 3, 4) - 1.0
    for k in (3, 5):
        out = tds_kernels.temporal_max_diff(x, k, mix=False, backend=backend)
        torch.testing.assert_close(out, max_diff_direct(x.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1))
    one = tds_kernels.temporal_max_diff(x[:, :1], 3, mix=False, backend=backend)
    assert (one == 0).all()  # a single frame is its own max


def _grads_match(module, module64, inputs, inputs64, fn, fn64, tol):
    """Output and every gradient (inputs and parameters) of fn(module) against fn64(module64) (fp64)."""
    g = torch.randn(fn(module, *inputs).shape, generator=torch.Generator().manual_seed(9))
    module.zero_grad(set_to_none=True), module64.zero_grad(set_to_none=True)
    out, out64 = fn(module, *inputs), fn64(module64, *inputs64)
    (out * g.to(out.dtype)).sum().backward()
    (out64 * g.double()).sum().backward()
    torch.testing.assert_close(out.double(), out64, rtol=tol, atol=tol)
    for i, (a, b) in enumerate(zip(inputs, inputs64)):
        if b.requires_grad:
            torch.testing.assert_close(a.grad.double(), b.grad, rtol=tol, atol=tol * max(1, b.grad.abs().max().item()),
                                       msg=lambda m: f"input {i} gradient: {m}")
    for (name, p), (_, p64) in zip(module.named_parameters(), module64.named_parameters()):
        torch.testing.assert_close(p.grad.double(), p64.grad, rtol=tol, atol=tol * max(1, p64.grad.abs().max().item()),
                                   msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [1, 2, 3])
@pytest.mark.parametrize("variant", ["gated", "plain"])
def test_td_adapter_in_the_model_matches_spec(backend, T, variant):
    """Value and gradients of the model's TD-Adapter against the docs/model.md formula written out (fp64)."""
    dtype = torch.float64 if backend == "reference" else torch.float32
    td = tds_kernels.TDAdapter(64, reduction=16, kernel_size=3, variant=variant, backend=backend).to(dtype)
    with torch.no_grad():
        for bn in (td.bn1, td.bn2):
            bn.weight.uniform_(-1.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    td64 = copy.deepcopy(td).double()
    u = torch.randn(2, T, 6, 64, dtype=dtype)
    _grads_match(td, td64, [u.clone().requires_grad_()], [u.double().requires_grad_()],
                 lambda m, x: m(x), lambda m, x: td_adapter_direct(x, m), _tol(backend, dtype))


@pytest.mark.parametrize("lean", [False, True])
def test_side_connection_is_half_old_half_projection(lean, monkeypatch):
    model = build_model(tiny_config(fused_ops=lean))
    side = model.side
    B, T, N, d = 2, 3, 16, 64
    s = torch.randn(B, T, N, d)
    x = torch.randn(B * T, N + 1, TINY_VISION_CFG["width"])  # a frozen block output
    seen = {}

    def record(s_in, p_cls, pos):
        seen.update(s=s_in, p_cls=p_cls, pos=pos)
        return s_in

    monkeypatch.setattr(side.blocks[1], "forward", record)
    out = side.layer(1, s, x)
    conn = side.connections[1]
    p = F.linear(F.layer_norm(x, (x.shape[-1],), conn.norm.weight, conn.norm.bias, conn.norm.eps),
                 conn.proj.weight, conn.proj.bias).view(B, T, N + 1, d)
    torch.testing.assert_close(out, 0.5 * s + 0.5 * p[:, :, 1:])
    torch.testing.assert_close(seen["p_cls"], p[:, :, 0])
    assert seen["pos"] is side.pos_embed and side.pos_embed.shape == (N, d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_side_block_matches_spec(backend):
    """Value and gradients of a whole side block against docs/model.md §3 in the layouts it names (fp64)."""
    dtype = torch.float64 if backend == "reference" else torch.float32
    blk = SideBlock(128, reduction=16, pool_kernel=3, backend=backend).to(dtype)
    with torch.no_grad():
        for m in blk.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    blk64 = copy.deepcopy(blk).double()
    B, T, h, w = 2, 3, 2, 3
    inputs = [torch.randn(B, T, h * w, 128, dtype=dtype), torch.randn(B, T, 128, dtype=dtype),
              torch.randn(h * w, 128, dtype=dtype)]  # s, p_cls, pos
    _grads_match(blk, blk64, [t.clone().requires_grad_() for t in inputs],
                 [t.double().requires_grad_() for t in inputs],
                 lambda m, *a: m(*a), lambda m, *a: side_block_direct(m, *a, (h, w)), _tol(backend, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_position_embedding_never_reaches_the_residual(backend):
    blk = SideBlock(64, backend=backend)
    with torch.no_grad():  # silence the attention output and the MLP: the block is then s + TDAdapter(u)
        for lin in (blk.attn.out_proj, blk.mlp_fc2):
            lin.weight.zero_(), lin.bias.zero_()
    s, p_cls = torch.randn(1, 2, 4, 64), torch.randn(1, 2, 64)
    a = blk(s, p_cls, torch.zeros(4, 64))
    b = blk(s, p_cls, 100 * torch.randn(4, 64))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, s + blk.td_adapter(blk.temporal_branch(s)))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_lean_functions_match_plain_autograd_and_keep_less(train):
    torch.manual_seed(0)
    ln, lin = nn.LayerNorm(32).double(), nn.Linear(32, 16).double()
    bn, fc1, fc2 = TokenBatchNorm(24).double(), nn.Linear(24, 64).double(), nn.Linear(64, 16).double()
    with torch.no_grad():
        for norm in (ln, bn):
            norm.weight.uniform_(-1.5, 1.5), norm.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    bn.train(train)
    x = torch.randn(3, 5, 32, dtype=torch.float64)  # a frozen input
    s0 = torch.randn(3, 5, 24, dtype=torch.float64) * 3 + 1
    g1, g2 = torch.randn(3, 5, 16, dtype=torch.float64), torch.randn(3, 5, 16, dtype=torch.float64)
    modules = nn.ModuleList([ln, lin, bn, fc1, fc2])

    def run(lean):
        modules.zero_grad(set_to_none=True)
        state = copy.deepcopy(bn.state_dict())
        s = s0.clone().requires_grad_()
        with saved_tensor_recorder(modules) as rec:
            a = lean_layernorm_linear(x, ln, lin) if lean else lin(ln(x))
            if lean:
                b = lean_gelu_linear(lean_batchnorm_linear(s, bn, fc1.weight, fc1.bias), fc2)
            else:
                b = fc2(F.gelu(fc1(bn(s))))
        ((a * g1).sum() + (b * g2).sum()).backward()
        stats = copy.deepcopy(bn.state_dict())
        bn.load_state_dict(state)
        return [a, b, s.grad] + [p.grad.clone() for p in modules.parameters()], stats, rec["bytes"]

    plain, stats0, bytes0 = run(False)
    lean, stats1, bytes1 = run(True)
    for p, l in zip(plain, lean):
        torch.testing.assert_close(l, p)
    for k in stats0:
        torch.testing.assert_close(stats1[k], stats0[k], msg=k)
    assert bytes1 < bytes0 * 0.6, (bytes1, bytes0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lean_side_connection_matches_plain_autograd(dtype):
    """(0.5 s + 0.5 p[:, :, 1:], p[:, :, 0]) with p = Linear(LayerNorm(x)): values and gradients of s, γ, β, W, b
    against float64 plain autograd; the lean error is at most twice plain autograd's in the same dtype."""
    torch.manual_seed(0)
    B, T, N, C, d = 2, 3, 5, 40, 16
    ln, lin = nn.LayerNorm(C).double(), nn.Linear(C, d).double()
    with torch.no_grad():
        ln.weight.uniform_(-1.5, 1.5), ln.bias.uniform_(-1, 1)
    x = torch.randn(B * T, N + 1, C, dtype=torch.float64) * 2 + 0.5  # frozen: no grad
    s0 = torch.randn(B, T, N, d, dtype=torch.float64)
    g_s, g_cls = torch.randn(B, T, N, d, dtype=torch.float64), torch.randn(B, T, d, dtype=torch.float64)
    modules = nn.ModuleList([ln, lin])

    def run(lean, dt):
        mods = copy.deepcopy(modules).to(dt)
        s = s0.to(dt).detach().clone().requires_grad_()
        if lean:
            out, cls = lean_side_connection(s, x.to(dt), mods[0], mods[1])
        else:
            p = mods[1](mods[0](x.to(dt))).view(B, T, N + 1, d)
            out, cls = 0.5 * s + 0.5 * p[:, :, 1:], p[:, :, 0]
        ((out * g_s.to(dt)).sum() + (cls * g_cls.to(dt)).sum()).backward()
        return [out, cls, s.grad] + [p.grad for p in mods.parameters()]

    ref = run(False, torch.float64)
    plain, lean = run(False, dtype), run(True, dtype)
    for r, p, l in zip(ref, plain, lean):
        err_plain = (p.double() - r).abs().max().item()
        err_lean = (l.double() - r).abs().max().item()
        assert err_lean <= 2 * err_plain + 1e-5 * r.abs().max().item(), (err_lean, err_plain)
    with pytest.raises(ValueError, match="x must be"):
        lean_side_connection(s0, x[:, 1:], ln, lin)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_lean_batchnorm_linear_float32_error_at_most_twice_plain(train):
    """Linear(BatchNorm(x)) on shifted tokens: the lean form's float32 error (value and every gradient) against
    float64 is at most twice plain autograd's float32 error."""
    torch.manual_seed(1)
    bn, lin = TokenBatchNorm(48).double(), nn.Linear(48, 40).double()
    with torch.no_grad():
        bn.weight.uniform_(-1.5, 1.5), bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(1, 3), bn.running_var.uniform_(0.5, 2)
    bn.train(train)
    s0 = torch.randn(2, 3, 37, 48, dtype=torch.float64) * 2 + 2
    g = torch.randn(2, 3, 37, 40, dtype=torch.float64)

    def run(lean, dt):
        b, li = copy.deepcopy(bn).to(dt), copy.deepcopy(lin).to(dt)
        s = s0.to(dt).detach().clone().requires_grad_()
        out = lean_batchnorm_linear(s, b, li.weight, li.bias) if lean else li(b(s))
        (out * g.to(dt)).sum().backward()
        return [out, s.grad, b.weight.grad, b.bias.grad, li.weight.grad, li.bias.grad]

    ref = run(False, torch.float64)
    plain, lean = run(False, torch.float32), run(True, torch.float32)
    for r, p, l in zip(ref, plain, lean):
        err_plain, err_lean = (p.double() - r).abs().max().item(), (l.double() - r).abs().max().item()
        assert err_lean <= 2 * err_plain + 1e-6 * r.abs().max().item(), (err_lean, err_plain)


def test_lean_functions_under_bf16_autocast_follow_plain_autocast():
    torch.manual_seed(0)
    ln, lin, fc = nn.LayerNorm(64), nn.Linear(64, 32), nn.Linear(128, 32)
    bn, fc1 = TokenBatchNorm(32), nn.Linear(32, 128)
    x = torch.randn(4, 7, 64)
    s0 = torch.randn(4, 7, 32)
    modules = nn.ModuleList([ln, lin, fc, bn, fc1])
    outs = {}
    for lean in (False, True):
        s = s0.clone().requires_grad_()
        modules.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a = lean_layernorm_linear(x, ln, lin) if lean else lin(ln(x))
            sb = s.bfloat16()  # the side stream is bf16 under autocast
            h = lean_batchnorm_linear(sb, bn, fc1.weight, fc1.bias) if lean else fc1(bn(sb))
            b = lean_gelu_linear(h, fc) if lean else fc(F.gelu(h))
        assert a.dtype == b.dtype == h.dtype == torch.bfloat16
        (a.float().sum() + b.float().square().sum()).backward()
        outs[lean] = [a.float(), b.float(), s.grad] + [p.grad for p in modules.parameters()]
    for p, l in zip(outs[False], outs[True]):
        torch.testing.assert_close(l, p, rtol=3e-2, atol=3e-2 * p.abs().max().item())


@pytest.mark.parametrize("padding, conv_padding", [("published", (1, 1, 1)), ("aligned", (1, 0, 0))])
def test_stem_paddings_give_the_backbone_grid(padding, conv_padding):
    model = build_model(tiny_config(stem_padding=padding))
    assert model.side.stem.conv_rgb.padding == conv_padding and model.side.stem.conv_mot.padding == conv_padding
    s = model.side.stem_tokens(make_clips(1, 2))
    assert s.shape == (1, 2, 16, 64)
