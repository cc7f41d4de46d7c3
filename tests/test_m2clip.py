"""M2-CLIP (arch m2clip, docs/m2clip.md): config, TED-Adapter against a loop-form plain-PyTorch
reference, text branch, a tiny training step, zero-shot. All on the random "tiny" CLIP."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from tdsclip.archs import build_model, model_config_from_dict
from tdsclip.m2clip import M2CLIP, M2CLIPConfig
from tdsclip.m2clip.adapters import TEDAdapter

from backends import op_backends

HAS_CPU = op_backends("temporal_adjacent_diff_forward").has_cpu
NAMES = ["Moving something from left to right", "Moving something from right to left", "Moving something up",
         "Moving something down"]
TINY = {"arch": "m2clip", "backbone": "tiny", "num_classes": 4, "num_frames": 3, "adapter_width": 16,
        "text_adapter_width": 16, "adapter_layers": 3}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    m = build_model(model_config_from_dict({**TINY, "fused_ops": False}))
    m.set_class_names(NAMES)
    return m


def _clips(B=2, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, T, 5, 3, 64, 64), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------ config

def test_config_round_trip_and_registry():
    cfg = model_config_from_dict(TINY)
    assert isinstance(cfg, M2CLIPConfig) and cfg.arch == "m2clip"
    assert M2CLIPConfig.from_dict(cfg.to_dict()) == cfg
    assert M2CLIPConfig.from_dict(__import__("yaml").safe_load(cfg.to_yaml())) == cfg
    cfg.override(["model.adapter_position=pre_mlp", "loss_mlm=0"])
    assert cfg.adapter_position == "pre_mlp" and cfg.loss_mlm == 0.0
    assert (cfg.resolved_image_size, cfg.grid) == (64, (4, 4))
    defaults = M2CLIPConfig()
    assert (defaults.adapter_width, defaults.adapter_layers, defaults.text_adapter_width) == (384, 12, 384)


@pytest.mark.parametrize("bad,match", [({"adapter_position": "middle"}, "adapter_position"),
                                       ({"te_kernel": 2}, "te_kernel"), ({"prompt": "a video"}, "prompt"),
                                       ({"mask_ratio": 1.5}, "mask_ratio"), ({"side_dim": 64}, "side_dim"),
                                       ({"loss_cmc": -1}, "loss_cmc"), ({"arch": "m2clip", "backbone": "nope"}, "nope"),
                                       ({"segment_frames": 6}, "segment_frames")])
def test_config_rejects(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        model_config_from_dict({**TINY, **bad})


def test_train_config_demo_m2clip_replaces_the_base_model_section():
    from tdsclip.engine.config import load_config

    cfg = load_config("demo_m2clip")
    assert isinstance(cfg.model, M2CLIPConfig) and not hasattr(cfg.model, "side_dim")
    assert cfg.data.dataset == "demo" and isinstance(cfg.model_config(), M2CLIPConfig)


# ------------------------------------------------------------------ TED-Adapter

def _ted_loop_reference(a: TEDAdapter, z: torch.Tensor) -> torch.Tensor:
    """The paper's equations frame by frame (Eq. 6-8), differences taken before the down-projection as in
    the authors' code: fc1(z_t - z_{t-1}) with z_{-1} := z_0 (a zero difference)."""
    B, T, L, C = z.shape
    h, w = a.grid
    k = a.te_conv.kernel_size[0]
    out = z.clone()
    for t in range(T):
        acc = a.te_conv.bias.expand(B, L, -1).clone()
        for j in range(k):  # depthwise temporal convolution, zero padding
            s = t + j - k // 2
            if 0 <= s < T:
                acc = acc + a.te_down(z[:, s]) * a.te_conv.weight[:, 0, j]
        out[:, t] = out[:, t] + a.te_up(acc)
        prev = z[:, t - 1, 1:] if t > 0 else z[:, 0, 1:]
        d = a.td_down(z[:, t, 1:] - prev)                                  # (B, M, c)
        d = d.transpose(1, 2).reshape(B, -1, h, w)
        d = F.conv2d(d, a.td_conv.weight, a.td_conv.bias, padding=a.td_conv.padding, groups=d.shape[1])
        out[:, t, 1:] = out[:, t, 1:] + a.td_up(d.flatten(2).transpose(1, 2))
    return out


@pytest.mark.parametrize("backend", ["reference", "triton", pytest.param("cpu", marks=pytest.mark.skipif(
    not HAS_CPU, reason="tds_kernels._C without temporal_adjacent_diff"))])
@pytest.mark.parametrize("T,te_k,td_k", [(1, 3, 3), (2, 3, 3), (5, 5, 1), (4, 3, 5)])
def test_ted_adapter_matches_loop_reference(backend, T, te_k, td_k):
    torch.manual_seed(T)
    a = TEDAdapter(12, 6, (3, 5), te_k, td_k, backend=backend).double()
    with torch.no_grad():  # the zero initialisation would hide both paths
        for p in a.parameters():
            p.normal_()
    z = torch.randn(2, T, 1 + 15, 12, dtype=torch.float64, requires_grad=True)
    y = a(z)
    y_ref = _ted_loop_reference(a, z)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [z, *a.parameters()], g)
    grads_ref = torch.autograd.grad(y_ref, [z, *a.parameters()], g)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_ted_adapter_starts_as_identity_and_first_frame_has_no_difference():
    a = TEDAdapter(8, 4, (2, 2))
    z = torch.randn(1, 3, 5, 8)
    assert torch.equal(a(z), z)  # zero-initialised convolutions and biases
    with torch.no_grad():
        a.td_conv.weight.normal_()
    d = a.difference(z[:, :, 1:])
    z2 = z.clone()
    z2[:, 0] += 1.0  # the first frame's TD output depends on nothing (its difference is zero) ...
    torch.testing.assert_close(a.difference(z2[:, :, 1:])[:, 0], d[:, 0])
    assert not torch.allclose(a.difference(z2[:, :, 1:])[:, 1], d[:, 1])  # ... the second frame's does


# ------------------------------------------------------------------ model

def test_forward_shapes_frozen_parts_and_supervised_logits(tiny_model):
    m = tiny_model.eval()
    clips = _clips()
    logits = m(clips)
    assert logits.shape == (2, 4)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"video.adapters", "video.frame_adapter", "text.adapter", "text.cross_adapter",
                         "classifier.weight", "classifier.bias", "mlm_head.dense", "mlm_head.norm", "mlm_head.bias"}
    assert not m.video.backbone.conv1.weight.requires_grad and not m.text.token_embedding.weight.requires_grad
    # the visual head uses the centre frame only: changing the other frames of a window changes nothing
    other = clips.clone()
    other[:, :, [0, 1, 3, 4]] = 0
    torch.testing.assert_close(m(other), logits)
    with pytest.raises(ValueError, match="5, 3, H, W"):
        m(clips[:, :, :3])


def test_segment_frames_feed_consecutive_window_frames_in_time_order(tiny_model):
    """segment_frames=k: the ViT sees k consecutive frames of each window, segment after segment (time order)."""
    clips = _clips()
    m = copy.deepcopy(tiny_model).eval()
    torch.testing.assert_close(m.frames_of(clips), clips[:, :, 2])
    for k, window in ((2, [2, 3]), (3, [1, 2, 3]), (5, [0, 1, 2, 3, 4])):
        m.config.segment_frames = k
        frames = m.frames_of(clips)
        assert frames.shape == (2, 3 * k, 3, 64, 64)
        torch.testing.assert_close(frames, clips[:, :, window].flatten(1, 2))
    assert m(clips).shape == (2, 4)  # T x 5 frames through the adapters' temporal paths


def test_text_prefix_cut_and_cache_are_exact(tiny_model):
    """Prompts cut after the longest end token and the cached frozen layers give the features of the
    full 77-token context."""
    t = tiny_model.text
    feats = t.class_features(NAMES, torch.device("cpu"))
    tokens = t.prompt_tokens(NAMES, torch.device("cpu"))
    full = torch.zeros(len(NAMES), t.context_length, dtype=torch.long)
    full[:, :tokens.shape[1]] = tokens
    x = t.token_embedding(full) + t.positional_embedding
    for blk in t.resblocks[:-1]:
        x = blk(x, attn_mask=t.attn_mask)
    ref = t.pooled(full, t.last_layer(x))
    torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t.class_features(NAMES, torch.device("cpu")), feats)


def test_masked_tokens_mask_whole_words_of_the_class_name(tiny_model):
    import random

    t = tiny_model.text
    labels = torch.tensor([0, 2, 3])
    tokens, targets = t.masked_tokens(NAMES, labels, 0.2, random.Random(1))
    mask_id = t.tokenizer.encode("mask")[0]
    plain = t.prompt_tokens(NAMES, torch.device("cpu"))[labels]
    for i in range(3):
        hit = targets[i] != -100
        assert hit.sum() >= 1
        assert (tokens[i][hit] == mask_id).all()
        L = min(tokens.shape[1], plain.shape[1])
        torch.testing.assert_close(targets[i][hit], plain[i, :L][hit[:L]])  # the original tokens
        assert (tokens[i][~hit][:4] == plain[i][:4]).all()                  # "a video of" untouched


def test_tiny_training_step_changes_only_trainable_parameters():
    torch.manual_seed(0)
    m = build_model(model_config_from_dict({**TINY, "fused_ops": False}))
    m.set_class_names(NAMES)
    m.train()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([1, 3])
    out = m(_clips(), labels)
    assert set(out) == {"logits", "video", "text", "mlm_logits", "mlm_targets"}
    loss, logits = m.compute_loss(out, labels, torch.nn.CrossEntropyLoss())
    assert loss.isfinite() and logits.shape == (2, 4)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    opt.step()
    for n, p in m.named_parameters():
        changed = not torch.equal(p, before[n])
        # down-projections before a zero-initialised convolution get no gradient at the first step
        behind_zero_conv = n.endswith(("te_down.bias", "td_down.bias")) or n == "video.frame_adapter.down.bias"
        assert changed == p.requires_grad or behind_zero_conv, n
    # every loss term counts: with all weights but one zero the loss is that head's alone
    cfg = m.config
    for head in ("loss_contrastive", "loss_cmc", "loss_vc", "loss_mlm"):
        m.config = dataclasses.replace(cfg, **{h: (1.0 if h == head else 0.0) for h in
                                        ("loss_contrastive", "loss_cmc", "loss_vc", "loss_mlm")})
        assert m.compute_loss(out, labels, torch.nn.CrossEntropyLoss())[0] > 0, head
    m.config = cfg


def test_training_forward_needs_class_names():
    m = build_model(model_config_from_dict({**TINY, "fused_ops": False}))
    with pytest.raises(RuntimeError, match="set_class_names"):
        m.train()(_clips(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        m.set_class_names(NAMES[:2])


def test_fused_and_reference_difference_agree():
    torch.manual_seed(0)
    m = build_model(model_config_from_dict({**TINY, "fused_ops": False})).eval()
    with torch.no_grad():
        for a in m.video.adapters:
            for p in a.parameters():
                p.normal_(std=0.1)
    clips = _clips()
    ref = m(clips)
    m.set_fused_ops(True)
    torch.testing.assert_close(m(clips), ref)
    m.set_fused_ops(False)
    m.set_grad_checkpoint(True).train()
    m.set_class_names(NAMES)
    out = m(clips, torch.tensor([0, 1]))
    m.compute_loss(out, torch.tensor([0, 1]), torch.nn.CrossEntropyLoss())[0].backward()


def test_zero_shot_logits_from_names_alone(tiny_model):
    m = tiny_model.eval()
    clips = _clips()
    names = ["jumping", "Moving something up", "waving a hand"]  # any names, any number
    z = m.zero_shot_logits(clips, names)
    assert z.shape == (2, 3) and (z.abs() <= 100 + 1e-4).all()
    _, _, video = m.encode_video(clips)
    text = m.text.class_features(names, clips.device)
    torch.testing.assert_close(z, 100 * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t())
    # the order of the names only permutes the columns
    torch.testing.assert_close(m.zero_shot_logits(clips, names[::-1]), z.flip(1))


def test_zero_shot_classifier_wrapper_and_class_names_file(tmp_path, tiny_model):
    from tdsclip.eval import ZeroShotClassifier, read_class_names

    (tmp_path / "names.txt").write_text("jumping\n\nwaving a hand\n")
    names = read_class_names(str(tmp_path / "names.txt"))
    assert names == ["jumping", "waving a hand"]
    wrapped = ZeroShotClassifier(tiny_model, names).eval()
    torch.testing.assert_close(wrapped(_clips()), tiny_model.zero_shot_logits(_clips(), names))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no class names"):
        read_class_names(str(tmp_path / "empty.txt"))


def test_pretrained_whole_clip_checkpoint_is_loaded(tmp_path):
    from tdsclip.m2clip.towers import build_clip

    torch.manual_seed(3)
    clip, _, _ = build_clip(M2CLIPConfig(backbone="tiny", num_classes=4))
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    torch.manual_seed(4)
    loaded, _, _ = build_clip(M2CLIPConfig(backbone="tiny", num_classes=4, pretrained=str(path)))
    for (n, a), (_, b) in zip(clip.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    torch.save({k: v for k, v in clip.state_dict().items() if k.startswith("visual.")}, tmp_path / "visual.pt")
    with pytest.raises(ValueError, match="whole CLIP"):
        build_clip(M2CLIPConfig(backbone="tiny", num_classes=4, pretrained=str(tmp_path / "visual.pt")))


def test_state_dict_round_trip_rebuilds_the_same_model(tiny_model):
    m2 = M2CLIP(copy.deepcopy(tiny_model.config))
    m2.load_state_dict(tiny_model.state_dict())
    m2.eval()
    clips = _clips()
    torch.testing.assert_close(m2(clips), tiny_model.eval()(clips))
    torch.testing.assert_close(m2.zero_shot_logits(clips, NAMES), tiny_model.zero_shot_logits(clips, NAMES))


def test_trainer_steps_and_zero_shot_eval_end_to_end(tmp_path):
    """The shared trainer trains arch m2clip (set_class_names, model(clips, labels), compute_loss) and
    ``run_eval(..., zero_shot=True)`` evaluates the checkpoint from class names alone, with a names file
    and any number of classes."""
    from tdsclip.engine.config import from_dict
    from tdsclip.engine.datasource import TensorDataSource
    from tdsclip.eval import run_eval
    from tdsclip.run import run_training

    cfg = from_dict({"name": "m2", "model": {**TINY, "num_frames": 2},
                     "data": {"batch_size": 4}, "optim": {"epochs": 1, "warmup_epochs": 0, "lr": 1e-2},
                     "runtime": {"output": str(tmp_path), "amp": "off", "log_every": 1, "progress": False}})
    torch.manual_seed(0)
    x = torch.randint(0, 256, (12, 2, 5, 3, 64, 64), dtype=torch.uint8)
    y = torch.arange(12) % 4
    data = TensorDataSource((x[:8], y[:8]), (x[8:], y[8:]), 4, class_names=NAMES)
    result, _ = run_training(cfg, data=data, log=lambda *a: None)
    assert result.status == "done" and result.global_step == 2
    (tmp_path / "names.txt").write_text("jumping\nwaving a hand\nMoving something up\n")
    val3 = TensorDataSource((x[:8], y[:8] % 3), (x[8:], y[8:] % 3), 4, class_names=["a", "b", "c"])
    summary = run_eval(result.checkpoint, [], data=val3, log=lambda *a: None, zero_shot=True,
                       class_names_file=str(tmp_path / "names.txt"))
    assert summary["zero_shot"] and summary["num_videos"] == 4 and summary["class_names"][0] == "jumping"
    assert summary["json"].endswith("eval_zeroshot_val_single.json")
    supervised = run_eval(result.checkpoint, [], data=data, log=lambda *a: None)
    assert not supervised["zero_shot"] and len(supervised["class_names"]) == 4
