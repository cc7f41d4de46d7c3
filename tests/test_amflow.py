"""The AM-flow model (tdsclip/amflow, docs/amflow.md): config round trip and registry, the model
contract, the fused path against the explicit-attention-map path, the frozen model's function at
initialisation, checkpointing, and one training step through the shared trainer."""
import copy

import pytest
import torch

from tdsclip.amflow import AMFlowConfig, AMFlowModel, build
from tdsclip.archs import arch_names, build_model, model_config_from_dict

TINY = dict(backbone="dinov2_tiny", num_classes=4, num_frames=3, align_heads=4)


def clips(B=2, T=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, T, 5, 3, size, size), dtype=torch.uint8, generator=g)


# --------------------------------------------------------------------------------------------- config

def test_config_round_trip_and_registry(tmp_path):
    assert "amflow" in arch_names()
    cfg = model_config_from_dict({"arch": "amflow", **TINY, "blocks": [2, 0], "temporal": "lstm"})
    assert isinstance(cfg, AMFlowConfig) and cfg.blocks == [0, 2]
    again = AMFlowConfig.from_dict(cfg.to_dict())
    assert again == cfg
    path = tmp_path / "m.yaml"
    path.write_text(cfg.to_yaml())
    assert AMFlowConfig.from_yaml(str(path)) == cfg
    cfg.override(["model.temporal=transformer", "adapter_dim=32", "align=false", "pretrained=null"])
    assert (cfg.temporal, cfg.adapter_dim, cfg.align) == ("transformer", 32, False)
    assert cfg.resolved_temporal_dim == 32


@pytest.mark.parametrize("values,match", [
    ({"backbone": "ViT-X"}, "backbone must be one of"),
    ({"side_dim": 64}, "unknown config key 'model.side_dim'"),
    ({"temporal": "gru"}, "temporal must be one of"),
    ({"backbone": "tiny", "align_heads": 12}, "align_heads"),
    ({"image_size": 65, "backbone": "tiny"}, "image_size must be a positive multiple"),
    ({"blocks": [-1]}, "0-based"),
    ({"arch": "tdsclip"}, "arch"),
    ({"token_pool": "max"}, "token_pool must be one of"),
    ({"token_slots": 0}, "token_slots must be >= 1"),
    ({"flow_gain": 0.0}, "flow_gain must be > 0"),
])
def test_config_errors_name_the_field(values, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AMFlowConfig.from_dict(values)


def test_adapter_scale_zero_is_rejected():
    """s = 0 with W_up = 0 (its initialisation): d/ds = W_up E = 0 and d/dW_up = s·(…) = 0, so the
    adapters would never change the tokens, silently."""
    torch.manual_seed(0)
    model = build(AMFlowConfig(**TINY, align=False, adapter_scale=0.5))
    model.adapters["0"].attn_adapter.scale.data.zero_()
    model.train()(clips()).sum().backward()
    adapter = model.adapters["0"].attn_adapter
    assert adapter.scale.grad == 0 and not adapter.up.weight.grad.any()
    with pytest.raises(ValueError, match="adapter_scale must not be 0"):
        AMFlowConfig(**TINY, adapter_scale=0.0)


def test_override_error_leaves_config_unchanged():
    cfg = AMFlowConfig(**TINY)
    with pytest.raises(ValueError):
        cfg.override(["temporal=gru"])
    assert cfg.temporal == "tcn"


def test_block_index_beyond_the_backbone_is_an_error():
    with pytest.raises(ValueError, match="has 3 blocks"):
        build(AMFlowConfig(**TINY, blocks=[3]))


def test_training_config_demo_amflow_resolves_to_amflow():
    from tdsclip.engine.config import load_config

    cfg = load_config("demo_amflow")
    mcfg = cfg.model_config()
    assert isinstance(mcfg, AMFlowConfig) and mcfg.backbone == "dinov2_tiny"
    assert cfg.data.dataset == "demo" and cfg.optim.epochs > 0   # inherited from demo
    assert not hasattr(cfg.model, "side_dim")                            # TDS-CLIP's model fields are not inherited


# --------------------------------------------------------------------------------------------- model

@pytest.mark.parametrize("backbone", ["dinov2_tiny", "tiny"])
def test_contract_frozen_backbone_and_gradients(backbone):
    model = build_model(model_config_from_dict({"arch": "amflow", **TINY, "backbone": backbone}))
    model.train()
    assert not model.backbone.training
    out = model(clips())
    assert out.shape == (2, 4)
    out.sum().backward()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    # float clips in [0, 255] give the same answer as uint8
    torch.testing.assert_close(model(clips().float()), out)


def test_only_the_centre_frame_is_used():
    model = build(AMFlowConfig(**TINY)).eval()
    x = clips()
    y = x.clone()
    y[:, :, [0, 1, 3, 4]] = 255 - y[:, :, [0, 1, 3, 4]]
    torch.testing.assert_close(model(x), model(y))


@pytest.mark.parametrize("extra", [{}, {"align": False}, {"am_heads": "per_head"}, {"blocks": [1]},
                                   {"temporal": "lstm"}, {"temporal": "transformer", "temporal_heads": 4},
                                   {"token_pool": "slots", "token_slots": 3, "am_heads": "per_head", "flow_gain": 4.0}])
def test_fused_path_matches_explicit_attention_map_path(extra):
    torch.manual_seed(1)
    ref_model = build(AMFlowConfig(**TINY, **extra, fused_ops=False)).eval()
    fused = copy.deepcopy(ref_model).set_fused_ops(True)
    with torch.no_grad():  # non-zero up-projections so the adapters change the tokens
        for p in fused.parameters():
            if p.requires_grad and p.dim() == 2 and not p.any():
                p.normal_(0, 0.1)
    ref_model.load_state_dict(fused.state_dict())
    x = clips()
    torch.testing.assert_close(fused(x), ref_model(x), rtol=1e-4, atol=1e-5)
    for T in (1, 2):
        torch.testing.assert_close(fused(clips(T=T)), ref_model(clips(T=T)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["dinov2_tiny", "tiny"])
def test_at_initialisation_the_tokens_are_the_frozen_models(backbone):
    """W_up starts at zero: the adapted blocks reproduce the frozen image model exactly."""
    model = build(AMFlowConfig(**{**TINY, "backbone": backbone})).eval()
    x = clips()
    B, T = x.shape[:2]
    frames = x[:, :, 2].reshape(B * T, 3, 64, 64)
    seen = {}
    model.head_norm.register_forward_hook(lambda m, inp, out: seen.setdefault("cls", inp[0]))
    model(x)
    with torch.no_grad():
        if backbone == "dinov2_tiny":
            tokens = model.backbone.vit.blocks(model.backbone.embed(frames))
        else:
            tokens = model.backbone.vit(frames)[-1]
    torch.testing.assert_close(seen["cls"], tokens.reshape(B, T, -1, tokens.shape[-1])[:, -1, 0])


def test_am_flow_sees_motion_and_is_zero_for_a_still_clip():
    model = build(AMFlowConfig(**TINY, align=False)).eval()
    flows = []
    model.adapters["0"].attn_adapter.register_forward_hook(lambda m, inp, out: flows.append(inp[0][..., -1]))
    still = clips(B=1, T=3)
    still[:] = still[:, :1]
    model(still)
    assert flows[-1].abs().max() == 0
    model(clips(B=1, T=3))
    assert flows[-1].reshape(3, -1)[:2].abs().max() > 0 and flows[-1].reshape(3, -1)[2].abs().max() == 0


def test_flow_gain_scales_the_flow_at_the_adapter_input():
    x = clips(B=1, T=3)
    flows = {}
    for gain in (1.0, 3.0):
        torch.manual_seed(0)
        model = build(AMFlowConfig(**TINY, align=False, am_heads="per_head", flow_gain=gain)).eval()
        model.adapters["0"].attn_adapter.register_forward_hook(lambda m, inp, out, g=gain: flows.update({g: inp[0]}))
        model(x)
    width = 64
    torch.testing.assert_close(flows[3.0][..., :width], flows[1.0][..., :width])  # LN(X) untouched
    torch.testing.assert_close(flows[3.0][..., width:], 3.0 * flows[1.0][..., width:])
    assert flows[1.0].shape[-1] == width + 4  # one flow channel per head


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(2)
    model = build(AMFlowConfig(**TINY)).train()
    x = clips()
    model(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_grad_checkpoint(True)
    model(x).square().sum().backward()
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)


def test_bad_clips_are_rejected():
    model = build(AMFlowConfig(**TINY))
    with pytest.raises(ValueError, match=r"\(B, T, 5, 3, H, W\)"):
        model(torch.zeros(2, 3, 3, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        model(torch.zeros(1, 2, 5, 3, 32, 32))
    with pytest.raises(TypeError, match="uint8 or floating"):
        model(torch.zeros(1, 2, 5, 3, 64, 64, dtype=torch.int32))


# --------------------------------------------------------------------------------------------- training

def test_one_training_run_through_the_shared_trainer(tmp_path):
    from tdsclip.engine.checkpoint import load_checkpoint
    from tdsclip.engine.config import from_dict
    from tdsclip.engine.datasource import TensorDataSource
    from tdsclip.engine.distributed import DistInfo
    from tdsclip.engine.trainer import Trainer
    from tdsclip.eval import load_model_from_checkpoint

    cfg = from_dict({"name": "amflow_step", "model": {"arch": "amflow", **TINY, "num_frames": 2},
                     "data": {"batch_size": 4}, "optim": {"epochs": 1, "warmup_epochs": 0, "lr": 1e-3},
                     "runtime": {"output": str(tmp_path), "amp": "off", "log_every": 1, "progress": False}})
    model = build_model(cfg.model_config())
    frozen = {n: p.clone() for n, p in model.backbone.named_parameters()}
    trainable = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    x, y = clips(B=12, T=2, seed=3), torch.arange(12) % 4
    data = TensorDataSource((x[:8], y[:8]), (x[8:], y[8:]), 4, seed=0)
    result = Trainer(cfg, model, data, DistInfo(), log=lambda *a: None).fit()
    assert result.status == "done" and result.global_step == 2
    for n, p in model.backbone.named_parameters():
        assert torch.equal(p, frozen[n]), n
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert any(".attn_adapter." in n for n in changed) and any("head_fc" in n for n in changed)
    # the checkpoint rebuilds the same model through the registry (what eval and predict do)
    reloaded, rcfg, _ = load_model_from_checkpoint(result.checkpoint, [], "cpu", state=load_checkpoint(result.checkpoint))
    assert isinstance(reloaded, AMFlowModel) and rcfg.model.arch == "amflow"
    model.eval()
    torch.testing.assert_close(reloaded(x[8:]), model(x[8:]))


# --------------------------------------------------------------------------------------------- summary

def test_summary_parameters_match_the_docs_table_and_adapter_flops_by_hand():
    """docs/amflow.md §6: DINOv2 B/14, TCN (the defaults); the adapters' FLOPs of the tiny model by hand."""
    from tdsclip.amflow import summary

    counts = summary.parameter_counts(summary.meta_model(AMFlowConfig()))
    m = {k: round(v / 1e6, 2) for k, v in counts.items()}
    assert (m["adapters (W_down, W_up, s)"], m["token pooling weights"], m["aligning encoders"],
            m["temporal modules"], m["trainable total"]) == (28.36, 4.74, 42.58, 56.66, 135.72)
    assert counts["trainable total"] == sum(v for k, v in counts.items() if k not in ("trainable total", "frozen image model"))

    cfg = AMFlowConfig(**TINY, align=False)
    flops = summary.flops_per_view(cfg, frames=2)
    T, L, C, r, blocks = 2, 17, 64, 64, 3
    per_frame = 2 * L * (C + 1) * r + 2 * L * r * C + 2 * (2 * L * C * r)  # MHSA adapter ([LN(X) ‖ flow]) + MLP adapter
    assert flops["adapters"] == pytest.approx(T * blocks * per_frame, rel=1e-6)
    assert flops["frozen image model + AM flow"] > 0
    assert summary.flops_per_view(cfg, frames=4)["adapters"] == pytest.approx(2 * flops["adapters"], rel=1e-6)
