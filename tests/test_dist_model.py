"""DiST's temporal encoder and integration branch against plain-PyTorch loop references (float64),
the model's wiring against the paper's equations, gradients, checkpointing, the linear head, and
the state that checkpoints keep."""
import pytest
import torch
import torch.nn.functional as F

from tdsclip.dist import DiSTConfig, build_model
from tdsclip.dist.integration import IntegrationFFN, IntegrationToTemporal, TemporalToIntegration
from tdsclip.dist.temporal import TBlock, TemporalStem

D64 = torch.float64


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def layer_norm(x, weight, bias, eps=1e-5):  # over the last dim
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def temporal_taps(x, weight, bias, dim):
    """Same-length conv over ``dim`` as a loop over the k taps; x (..., C_in) channel-last,
    weight (C_out, C_in, k)."""
    k = weight.shape[-1]
    pad = k // 2
    T = x.shape[dim]
    out = torch.zeros(*x.shape[:-1], weight.shape[0], dtype=x.dtype) + bias
    for t in range(T):
        acc = 0
        for j in range(k):
            src = t + j - pad
            if 0 <= src < T:
                acc = acc + x.select(dim, src) @ weight[:, :, j].t()
        out.select(dim, t).add_(acc - bias * 0)
    return out


def spatial_3x3(x, weight, bias):
    """(B, T, h, w, C_in) → (B, T, h, w, C_out): 3×3 conv with zero padding as 9 shifted matmuls."""
    B, T, h, w, _ = x.shape
    padded = F.pad(x, (0, 0, 1, 1, 1, 1))
    out = torch.zeros(B, T, h, w, weight.shape[0], dtype=x.dtype) + bias
    for dy in range(3):
        for dx in range(3):
            out = out + padded[:, :, dy:dy + h, dx:dx + w] @ weight[:, :, dy, dx].t()
    return out


# --------------------------------------------------------------------------------------------- temporal encoder

@pytest.mark.parametrize("frames, kernel_t", [(1, 5), (2, 5), (6, 3)])
def test_stem_matches_per_frame_patch_projection_loop(frames, kernel_t):
    torch.manual_seed(0)
    stem = TemporalStem(dim=5, patch_size=4, kernel_t=kernel_t).to(D64)
    x = torch.randn(2, 3, frames, 8, 12, dtype=D64)
    patches = x.unfold(3, 4, 4).unfold(4, 4, 4)               # (B, 3, T, h, w, 4, 4)
    W = stem.conv.weight                                      # (C, 3, k, 4, 4)
    ref = torch.zeros(2, 5, frames, 2, 3, dtype=D64) + stem.conv.bias.view(1, 5, 1, 1, 1)
    for t in range(frames):
        for j in range(kernel_t):
            src = t + j - kernel_t // 2
            if 0 <= src < frames:
                ref[:, :, t] += torch.einsum("bchwpq,ocpq->bohw", patches[:, :, src], W[:, :, j])
    torch.testing.assert_close(stem(x), ref)


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_t_block_matches_explicit_r2plus1d(frames):
    torch.manual_seed(1)
    block = TBlock(dim=6, kernel_t=3, mlp_ratio=1.5).to(D64)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    z = torch.randn(2, 6, frames, 3, 4, dtype=D64)
    x = z.permute(0, 2, 3, 4, 1)                              # channel-last (B, T, h, w, C)
    h = layer_norm(x, block.norm.weight, block.norm.bias)
    h = quick_gelu(temporal_taps(h, block.temporal.weight[:, :, :, 0, 0], block.temporal.bias, dim=1))
    h = spatial_3x3(h, block.spatial.weight[:, :, 0], block.spatial.bias)
    ref = quick_gelu(x + h).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(block(z), ref)


# --------------------------------------------------------------------------------------------- integration

@pytest.mark.parametrize("gamma, T", [(1, 3), (2, 1), (2, 4), (4, 2)])
def test_psi_is_a_grouped_sum_over_each_sparse_frames_dense_frames_plus_cls(gamma, T):
    torch.manual_seed(2)
    psi = TemporalToIntegration(temporal_dim=3, dim=5, gamma=gamma, frames=T).to(D64)
    z = torch.randn(2, 3, gamma * T, 2, 3, dtype=D64)
    out = psi(z)
    assert out.shape == (2, T, 1 + 6, 5)
    for t in range(T):
        acc = psi.conv.bias.clone()
        for j in range(gamma):
            frame = z[:, :, gamma * t + j].flatten(2).transpose(1, 2)       # (B, N, βC), row-major
            acc = acc + frame @ psi.conv.weight[:, :, j, 0, 0].t()
        torch.testing.assert_close(out[:, t, 1:], acc)
        torch.testing.assert_close(out[:, t, 0], psi.cls_token[t, 0].expand(2, 5))


@pytest.mark.parametrize("gamma, T", [(1, 2), (2, 3), (3, 1)])
def test_phi_drops_cls_projects_and_repeats_each_frame_gamma_times(gamma, T):
    torch.manual_seed(3)
    phi = IntegrationToTemporal(dim=5, temporal_dim=3, gamma=gamma, grid=(2, 3)).to(D64)
    y = torch.randn(2, T, 7, 5, dtype=D64)
    out = phi(y)
    assert out.shape == (2, 3, gamma * T, 2, 3)
    for j in range(gamma * T):
        expected = (y[:, j // gamma, 1:] @ phi.linear.weight.t() + phi.linear.bias)   # (B, N, βC)
        torch.testing.assert_close(out[:, :, j], expected.transpose(1, 2).reshape(2, 3, 2, 3))
    # nearest upsampling = F.interpolate(mode="nearest") over time, as the authors' code
    lin = phi.linear(y[:, :, 1:]).permute(0, 3, 1, 2).reshape(2, 3, T, 2, 3)
    torch.testing.assert_close(out, F.interpolate(lin, size=(gamma * T, 2, 3), mode="nearest"))


@pytest.mark.parametrize("T", [1, 2, 5])
def test_integration_ffn_matches_explicit_two_branch_form(T):
    torch.manual_seed(4)
    ffn = IntegrationFFN(dim=8, mlp_ratio=1.0, temporal_mlp_ratio=0.5, kernel_t=3).to(D64)
    for p in ffn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    y = torch.randn(2, T, 5, 8, dtype=D64)
    spatial = quick_gelu(layer_norm(y, ffn.norm.weight, ffn.norm.bias) @ ffn.fc1.weight.t() + ffn.fc1.bias)
    spatial = spatial @ ffn.fc2.weight.t() + ffn.fc2.bias
    h = layer_norm(y, ffn.norm_t.weight, ffn.norm_t.bias) @ ffn.t_in.weight.t() + ffn.t_in.bias
    h = quick_gelu(temporal_taps(h, ffn.t_conv.weight, ffn.t_conv.bias, dim=1))   # per token over T
    temporal = h @ ffn.t_out.weight.t() + ffn.t_out.bias
    torch.testing.assert_close(ffn(y), spatial + temporal)


# --------------------------------------------------------------------------------------------- whole model

def tiny_config(**kw):
    base = dict(backbone="tiny", image_size=64, num_frames=4, num_classes=3, temporal_dim=8, integration_dim=32,
                pooling_layers=1)
    base.update(kw)
    return DiSTConfig(**base)


def tiny_clips(B=2, S=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, S, 5, 3, 64, 64), dtype=torch.uint8, generator=g)


def reference_features(model, clips):
    """The paper's equations (3)–(6) written out with the model's own modules, the frozen tower run
    to the end first (its per-block outputs X_1..X_L), then the head."""
    from tdsclip.dist.frames import split_frames
    from tdsclip.model.backbone import normalise_images

    cfg = model.config
    sparse, dense = split_frames(clips, cfg.gamma, cfg.dense_sampling)
    B, T = sparse.shape[:2]
    xs = model.backbone(sparse.reshape(B * T, 3, 64, 64))                 # [X_1, ..., X_L]
    v = normalise_images(dense.reshape(-1, 3, 64, 64), model.backbone.mean, model.backbone.std, torch.float32)
    v = v.view(B, -1, 3, 64, 64)
    if cfg.stem_input == "differences":                                   # f_{i+1} - f_i, the last repeated
        v = torch.stack([v[:, min(i, v.shape[1] - 2) + 1] - v[:, min(i, v.shape[1] - 2)]
                         for i in range(v.shape[1])], dim=1)
    z = model.stem(v.transpose(1, 2))                                     # Z^0, Ẑ^0 = 0
    y_prev = 0.0
    for l, layer in enumerate(model.layers):
        x_l = xs[l].view(B, T, *xs[l].shape[1:])
        z = layer.t_block(z)                                              # Z^l (Eq. 3)
        guided = y_prev + layer.input(x_l)
        z_hat = layer.to_temporal(guided) if l < len(model.layers) - 1 else 0   # Eq. 6 (last: feeds nothing)
        y_hat = guided + layer.to_integration(z)                          # Eq. 4, line 1
        y = layer.ffn(y_hat) + (y_hat if cfg.integration_residual == "every" else 0)
        z, y_prev = z + z_hat, y
    final = y_prev if cfg.integration_residual == "every" else y_prev + y_hat
    return model.head(final, xs[-1][:, 0].view(B, T, -1))


@pytest.mark.parametrize("kw", [{}, {"integration_residual": "every"},
                                {"dense_sampling": "segments", "num_frames": 8, "gamma": 2},
                                {"gamma": 3, "head": "linear"}, {"stem_input": "differences", "gamma": 4}])
def test_model_matches_the_equations(kw):
    torch.manual_seed(5)
    model = build_model(tiny_config(**kw)).eval()
    clips = tiny_clips(S=model.config.num_frames)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(clips), reference_features(model, clips),
                                   rtol=1e-5, atol=1e-5)


def test_stem_on_differences_ignores_what_does_not_change():
    """stem_input=differences: a clip whose dense frames are all one picture gives Z^0 = the stem's
    bias alone (the stem on raw frames does not), and a moving clip gives more."""
    torch.manual_seed(8)
    seen = {}
    for stem_input in ("differences", "frames"):
        model = build_model(tiny_config(stem_input=stem_input, gamma=4, head="linear")).eval()
        model.stem.register_forward_hook(lambda mod, inp, out: seen.__setitem__(stem_input, out))
        still = tiny_clips()[:, :1, 2:3].expand(-1, 4, 5, -1, -1, -1).contiguous()   # one frame per clip
        with torch.no_grad():
            model(still)
            bias = model.stem.conv.bias.view(1, -1, 1, 1, 1).expand_as(seen[stem_input])
            static_error = (seen[stem_input] - bias).abs().max().item()
            if stem_input == "differences":
                assert static_error == 0.0
                model(tiny_clips())
                assert (seen[stem_input] - bias).abs().max().item() > 0.1
            else:
                assert static_error > 0.1


def test_residual_choice_changes_the_model():
    torch.manual_seed(6)
    final = build_model(tiny_config()).eval()
    every = build_model(tiny_config(integration_residual="every")).eval()
    every.load_state_dict(final.state_dict())
    clips = tiny_clips()
    with torch.no_grad():
        assert not torch.allclose(final.forward_features(clips), every.forward_features(clips))


def test_frozen_tower_gets_no_gradient_and_every_trainable_parameter_does():
    torch.manual_seed(7)
    model = build_model(tiny_config()).train()
    model.set_class_names(["a", "b", "c"])
    model(tiny_clips(), torch.tensor([0, 1])).logsumexp(-1).sum().backward()
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(not p.requires_grad for p in model.text.parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_grad_checkpoint_gives_the_same_loss_and_gradients():
    torch.manual_seed(8)
    model = build_model(tiny_config()).train()
    clips = tiny_clips()
    grads = []
    for ckpt in (False, True):
        model.set_grad_checkpoint(ckpt).zero_grad()
        loss = model(clips).square().sum()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.trainable_parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


def test_bad_clips_are_rejected_with_the_reason():
    model = build_model(tiny_config())
    with pytest.raises(ValueError, match="S = num_frames = 4"):
        model(tiny_clips(S=3))
    with pytest.raises(ValueError, match=r"\(B, T, 5, 3, H, W\)"):
        model(torch.zeros(1, 4, 3, 64, 64))


def test_linear_head_variant_has_no_text_tower():
    model = build_model(tiny_config(head="linear"))
    assert model.text is None and not model.supports_zero_shot
    assert model(tiny_clips()).shape == (2, 3)
    with pytest.raises(RuntimeError, match="zero-shot"):
        model.zero_shot_logits(tiny_clips(), ["a", "b"])


def test_class_text_embeddings_travel_with_the_state_dict():
    torch.manual_seed(9)
    model = build_model(tiny_config()).eval()
    model.set_class_names(["jump", "run", "swim"])
    clips = tiny_clips()
    with torch.no_grad():
        before = model(clips)
    torch.manual_seed(10)
    other = build_model(tiny_config()).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(clips), before)
    with pytest.raises(ValueError, match="2 class names for num_classes=3"):
        other.set_class_names(["a", "b"])


@pytest.mark.parametrize("head", ["linear", "text"])
def test_head_init_fan_in_rescales_only_the_head_linears_and_keeps_the_state_dict(head):
    """``head_init: fan_in`` (docs/dist.md "Demo"): the head's (and classifier's) linear layers get std
    1/√fan_in instead of the authors' 0.02; everything else, and every key and shape, stays as it is."""
    torch.manual_seed(0)
    authors = build_model(tiny_config(head=head, integration_dim=64))
    torch.manual_seed(0)
    fan_in = build_model(tiny_config(head=head, integration_dim=64, head_init="fan_in"))
    a_state, f_state = authors.state_dict(), fan_in.state_dict()
    assert list(a_state) == list(f_state)
    assert all(a_state[k].shape == f_state[k].shape for k in a_state)
    rescaled = set()
    for name, mod in fan_in.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.split(".")[0] in ("head", "classifier"):
            w_auth, w_fan = dict(authors.named_modules())[name].weight, mod.weight
            assert abs(w_auth.std().item() - 0.02) < 0.005, name
            assert abs(w_fan.std().item() * mod.in_features ** 0.5 - 1) < 0.2, name
            rescaled.add(name)
    assert "head.spatial_cls" in rescaled and "head.layers.0.spatial_attn.attn.out_proj" in rescaled
    assert ("classifier" in rescaled) == (head == "linear")
    for key in a_state:
        if not any(key.startswith(name + ".weight") for name in rescaled):
            torch.testing.assert_close(a_state[key], f_state[key], msg=key)   # the rest is untouched
