"""The frozen backbone: no gradient, no saved activation, unchanged by training, always in eval mode;
weights from a local checkpoint (open_clip / OpenAI layouts) and the pretrained-tag plumbing."""
import copy

import pytest
import torch
import torch.nn.functional as F

import tdsclip.model.backbone as backbone_mod
from tdsclip import TDSCLIPConfig
from tdsclip.config import TINY_VISION_CFG
from tdsclip import build_model
from tdsclip.model import FrozenViT
from tdsclip.model.summary import activation_bytes
from test_model_utils import make_clips, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")


@pytest.mark.parametrize("fused_ops", [False, True])
def test_backbone_gets_no_gradient_and_no_optimizer_change(fused_ops):
    model = build_model(tiny_config(fused_ops=fused_ops))
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert {id(p) for p in trainable} == {id(p) for p in list(model.side.parameters()) + list(model.head.parameters())}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.15)  # even if handed every parameter
    loss = F.cross_entropy(model(make_clips(2, 2)), torch.tensor([1, 3]))
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in trainable)
    opt.step()
    for n, p in model.backbone.named_parameters():
        assert torch.equal(p, frozen[n]), f"backbone parameter {n} changed"


def test_backbone_stays_in_eval_mode():
    model = build_model(tiny_config())
    model.train()
    assert model.training and model.side.training and not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    model.backbone.train(True)
    assert not model.backbone.training


def test_no_tensor_is_saved_while_the_backbone_runs():
    """Hook-level check: nothing is packed for backward while a backbone module runs, and it runs with
    grad mode off, so this holds even if its weights were (wrongly) made trainable."""
    model = build_model(tiny_config())
    model.backbone.requires_grad_(True)  # the no_grad() guard alone must keep the graph out
    inside, grad_modes, saved_inside = [], [], []
    hooks = []
    for module in [model.backbone.conv1, model.backbone.ln_pre, *model.backbone.resblocks]:
        hooks.append(module.register_forward_pre_hook(
            lambda *a: inside.append(True) or grad_modes.append(torch.is_grad_enabled())))
        hooks.append(module.register_forward_hook(lambda *a: inside.pop() and None))

    def pack(t):
        if inside:
            saved_inside.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(make_clips(2, 2)).sum().backward()
    for h in hooks:
        h.remove()
    assert saved_inside == []
    assert grad_modes and not any(grad_modes)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_saved_bytes_do_not_depend_on_the_backbone_internals():
    """A backbone with a 4x wider MLP and twice the heads keeps the same bytes for backward: only the
    side network's own activations (which include each X_l it reads) are saved."""
    from open_clip.model import _build_vision_tower

    model = build_model(tiny_config())
    clips = make_clips(2, 2)
    base = activation_bytes(model, clips)
    wide = copy.deepcopy(model)
    cfg = dict(TINY_VISION_CFG, mlp_ratio=16.0, head_width=8)
    wide.backbone = FrozenViT(_build_vision_tower(64, cfg, quick_gelu=False))
    assert activation_bytes(wide, clips) == base
    # and the count is not trivially constant: more side width keeps more
    assert activation_bytes(build_model(tiny_config(side_dim=128)), clips) > base


def _save_visual(tmp_path, name, transform, **cfg_overrides):
    from open_clip.model import _build_vision_tower

    torch.manual_seed(11)
    visual = _build_vision_tower(64, dict(TINY_VISION_CFG, **cfg_overrides), quick_gelu=False)
    path = tmp_path / name
    torch.save(transform(visual.state_dict()), path)
    return visual, str(path)


@pytest.mark.parametrize("layout", ["tower", "full_clip", "nested_module"])
def test_local_checkpoint_loads_into_the_backbone(tmp_path, layout):
    transforms = {
        "tower": lambda sd: sd,
        "full_clip": lambda sd: {**{f"visual.{k}": v for k, v in sd.items()}, "text_projection": torch.zeros(3),
                                 "logit_scale": torch.ones(())},
        "nested_module": lambda sd: {"state_dict": {f"module.visual.{k}": v for k, v in sd.items()}},
    }
    visual, path = _save_visual(tmp_path, f"{layout}.pt", transforms[layout])
    model = build_model(tiny_config(pretrained=path))
    ref = FrozenViT(visual)
    for (n, p), (_, q) in zip(model.backbone.named_parameters(), ref.named_parameters()):
        assert torch.equal(p, q), n
    clips = make_clips(1, 2)
    images = clips[:, :, 2].reshape(2, 3, 64, 64)
    for a, b in zip(model.backbone(images), ref(images)):
        torch.testing.assert_close(a, b)


def test_local_checkpoint_position_embedding_is_resized(tmp_path):
    visual, path = _save_visual(tmp_path, "t.pt", lambda sd: sd)
    model = build_model(tiny_config(pretrained=path, image_size=96))
    assert model.backbone.positional_embedding.shape == (1 + 36, 64)
    torch.testing.assert_close(model.backbone.positional_embedding[0], visual.positional_embedding[0])
    assert model(make_clips(1, 2, size=96)).shape == (1, 5)


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    _, path = _save_visual(tmp_path, "wide.pt", lambda sd: sd, width=128, head_width=32)
    with pytest.raises((ValueError, RuntimeError), match="wide.pt|size mismatch"):
        build_model(tiny_config(pretrained=path))


def test_pretrained_tag_uses_quick_gelu_and_the_tag_normalisation(monkeypatch, tmp_path):
    """The 'openai' tag path without a download: the tag's config must switch QuickGELU on and pass
    its mean/std; the weights file open_clip returns is loaded (here a stub)."""
    import open_clip
    from open_clip.transformer import QuickGELU

    loaded = []
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, **kw: str(tmp_path / "w.bin"))
    monkeypatch.setattr(backbone_mod, "load_visual_weights", lambda visual, path: loaded.append(path))
    monkeypatch.setattr(TDSCLIPConfig, "validate", lambda self: None)  # skip the file / tag checks
    cfg = TDSCLIPConfig(backbone="ViT-B-16", pretrained="openai", side_dim=64)
    vit = backbone_mod.build_backbone(cfg)
    assert loaded == [str(tmp_path / "w.bin")]
    assert isinstance(vit.resblocks[0].mlp.gelu, QuickGELU)
    tag = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    assert vit.mean == tuple(tag["mean"]) and vit.std == tuple(tag["std"])
    plain = backbone_mod.build_backbone(TDSCLIPConfig(backbone="tiny", side_dim=64))
    assert not isinstance(plain.resblocks[0].mlp.gelu, QuickGELU)
    forced = backbone_mod.build_backbone(TDSCLIPConfig(backbone="tiny", side_dim=64, quick_gelu=True))
    assert isinstance(forced.resblocks[0].mlp.gelu, QuickGELU)


def test_unreachable_pretrained_tag_says_what_to_do(monkeypatch):
    import open_clip

    def offline(cfg, **kw):
        raise OSError("offline")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(RuntimeError, match="pretrained=/path/to/checkpoint"):
        backbone_mod.build_backbone(TDSCLIPConfig(pretrained="openai"))


def test_backbone_dtype_and_bad_inputs():
    model = build_model(tiny_config(backbone_dtype="bfloat16"))
    assert model.backbone.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.side.parameters())
    assert model(make_clips(1, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(B, T, 5, 3, H, W\)"):
        model(torch.zeros(1, 2, 3, 3, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        model(torch.zeros(1, 2, 5, 3, 32, 32))
    with pytest.raises(TypeError, match="uint8 or floating"):
        model(torch.zeros(1, 2, 5, 3, 64, 64, dtype=torch.int32))


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_inplace_mlp_block_is_bitwise_open_clips_block(quick_gelu, monkeypatch):
    """The fused model's frozen block (activation in place in the hidden tensor) computes exactly what
    open_clip's block does, and the fused model uses it for QuickGELU backbones (plain: open_clip's)."""
    model = build_model(tiny_config(fused_ops=True, quick_gelu=quick_gelu))
    bb = model.backbone
    x = torch.randn(3, 17, bb.width) * 3
    for i in range(bb.num_layers):
        assert torch.equal(bb.block(i, x, inplace_mlp=True), bb.block(i, x))
    calls = []
    real = backbone_mod._block_inplace_mlp
    monkeypatch.setattr(backbone_mod, "_block_inplace_mlp", lambda blk, x, act: calls.append(1) or real(blk, x, act))
    clips = make_clips(1, 2)
    with torch.no_grad():
        fused = model.eval()(clips)
        assert len(calls) == (bb.num_layers if quick_gelu else 0)
        plain = model.set_fused_ops(False)(clips)
    assert len(calls) == (bb.num_layers if quick_gelu else 0)  # the plain model runs open_clip's block
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
