"""`tdsclip convert`: published TDS-CLIP checkpoints (names and shapes from the official key file,
docs/model.md §7) → model directories."""
import os
import re

import pytest
import torch

from tdsclip import TDSCLIP, TDSCLIPConfig
from tdsclip.convert import main as convert_main, published_name
from test_model_utils import make_clips

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")

KEY_FILE = os.environ.get("TDSCLIP_OFFICIAL_KEYS", "/work/shared/official/tdsclip_vitb16_ssv2_keys.tsv")
needs_keys = pytest.mark.skipif(not os.path.isfile(KEY_FILE), reason=f"official key file {KEY_FILE} not present")

# B/16 SSv2 sizes → the tiny test model's (width 64, 3 layers, patch 16 at 64 px, side 64, 5 classes, r = 16)
TINY_SIZES = {768: 64, 2304: 192, 3072: 256, 197: 17, 196: 16, 320: 64, 960: 192, 1280: 256, 20: 4, 174: 5}
TINY_LAYERS = 3


def official_keys():
    rows = []
    with open(KEY_FILE, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, shape, dtype, _trainable = line.rstrip("\n").split("\t")
            rows.append((key, tuple(int(s) for s in re.findall(r"\d+", shape)), dtype))
    return rows


def tiny_published_state(dtype=torch.float32, seed=0):
    """A published-format model_state_dict with the real key names, shrunk to the tiny model."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, kind in official_keys():
        m = re.search(r"\.(resblocks|side_lns|side_linears|side_transformer)\.(\d+)\.", key)
        if m and int(m.group(2)) >= TINY_LAYERS:
            continue
        shape = tuple(TINY_SIZES.get(s, s) for s in shape)
        if kind == "int64":
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = (torch.rand(shape, generator=g) + 0.5).to(dtype)
        else:
            sd[key] = (torch.randn(shape, generator=g) * 0.2).to(dtype)
    return sd


# An independent oracle: layer-0 published names → ours, written out by hand from the published model.
HAND_MAP = {
    "visual.transformer.side_spatial_position_embeddings": "side.pos_embed",
    "visual.transformer.side_lns.0.weight": "side.connections.0.norm.weight",
    "visual.transformer.side_linears.0.bias": "side.connections.0.proj.bias",
    "visual.transformer.side_transformer.0.bn_1.running_var": "side.blocks.0.temporal_norm.running_var",
    "visual.transformer.side_transformer.0.conv.0.weight": "side.blocks.0.temporal_in.weight",
    "visual.transformer.side_transformer.0.conv.1.weight": "side.blocks.0.temporal_dw.weight",
    "visual.transformer.side_transformer.0.conv.2.bias": "side.blocks.0.temporal_out.bias",
    "visual.transformer.side_transformer.0.bn_2.weight": "side.blocks.0.mlp_norm.weight",
    "visual.transformer.side_transformer.0.mlp.fc1.weight": "side.blocks.0.mlp_fc1.weight",
    "visual.transformer.side_transformer.0.mlp.fc2.bias": "side.blocks.0.mlp_fc2.bias",
    "visual.transformer.side_transformer.0.attn.in_proj_weight": "side.blocks.0.attn.in_proj_weight",
    "visual.transformer.side_transformer.0.ln_1.bias": "side.blocks.0.attn_norm.bias",
    "visual.transformer.side_transformer.0.mse.conv1.weight": "side.blocks.0.td_adapter.down.weight",
    "visual.transformer.side_transformer.0.mse.bn1.weight": "side.blocks.0.td_adapter.bn1.weight",
    "visual.transformer.side_transformer.0.mse.conv2.weight": "side.blocks.0.td_adapter.up.weight",
    "visual.transformer.side_transformer.0.mse.bn2.running_mean": "side.blocks.0.td_adapter.bn2.running_mean",
    "visual.side_post_bn.weight": "head.norm.weight",
    "visual.side_conv1.weight": "side.stem.conv_rgb.weight",
    "visual.side_pre_bn3d.bias": "side.stem.bn_rgb.bias",
    "visual.side_conv1_c5.weight": "side.stem.conv_mot.weight",
    "visual.side_pre_bn3d_c5.running_mean": "side.stem.bn_mot.running_mean",
    "fc.weight": "head.fc.weight",
    "visual.conv1.weight": "backbone.conv1.weight",
    "visual.transformer.resblocks.0.mlp.c_fc.weight": "backbone.resblocks.0.mlp.c_fc.weight",
}


def tiny_reference_config():
    return TDSCLIPConfig(backbone="tiny", side_dim=64, num_classes=5, num_frames=8, quick_gelu=True)


def test_hand_map_agrees_with_the_converter():
    for pub, ours in HAND_MAP.items():
        assert published_name(ours) == pub


@needs_keys
def test_every_b16_key_maps_one_to_one_with_the_published_shapes():
    """Our ViT-B/16 SSv2 model (built on meta) ↔ the official key file: same 675 names, same shapes
    (the TD-Adapter's Conv2d (h, d, 1, 1) weights are Conv3d (h, d, 1, 1, 1) here)."""
    with torch.device("meta"):
        model = TDSCLIP(TDSCLIPConfig(backbone="ViT-B-16", side_dim=320, num_classes=174))
    ours = {published_name(k): tuple(v.shape) for k, v in model.state_dict().items()}
    official = {k: s for k, s, _ in official_keys()}
    assert len(official) == 675 and set(ours) == set(official)
    for key, shape in official.items():
        expect = shape + (1,) if ".mse.conv" in key else shape
        assert ours[key] == expect, key


def _save_published(path, sd, ddp=False):
    if ddp:
        sd = {"module." + k: v for k, v in sd.items()}
    torch.save({"epoch": 29, "model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)


@needs_keys
@pytest.mark.parametrize("dtype,ddp", [(torch.float32, False), (torch.float16, True)])
def test_convert_round_trip_matches_a_reference_loaded_by_hand(tmp_path, dtype, ddp):
    sd = tiny_published_state(dtype)
    src = tmp_path / "published.pth"
    _save_published(src, sd, ddp)
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(f"class {i}" for i in range(5)) + "\n")
    dst = tmp_path / "model"
    assert convert_main([str(src), str(dst), "--class-names", str(names)]) == 0
    assert sorted(os.listdir(dst)) == ["config.json", "model.safetensors"]

    converted = TDSCLIP.from_pretrained(str(dst))
    assert converted.class_names == [f"class {i}" for i in range(5)]
    c = converted.config
    assert (c.backbone, c.side_dim, c.num_classes, c.reduction, c.quick_gelu) == ("tiny", 64, 5, 16, True)

    # reference: our model built by hand, every tensor copied through the converter's naming, checked
    # for the hand-written pairs first
    ref = TDSCLIP(tiny_reference_config()).eval()
    ref_state = {}
    for ours, tensor in ref.state_dict().items():
        pub = sd[published_name(ours)]
        ref_state[ours] = pub.reshape(tensor.shape).to(tensor.dtype)
    ref.load_state_dict(ref_state)
    for pub, ours in HAND_MAP.items():
        assert torch.equal(converted.state_dict()[ours].flatten(), sd[pub].float().flatten()), pub
    clips = make_clips(2, 8)
    with torch.no_grad():
        assert torch.equal(converted(clips), ref(clips))


@needs_keys
def test_missing_unknown_and_misshaped_keys_exit_2_listing_them(tmp_path, capsys):
    sd = tiny_published_state()
    del sd["visual.transformer.side_transformer.1.mse.bn2.bias"]
    sd["visual.transformer.side_transformer.0.extra.weight"] = torch.zeros(3)
    sd["visual.transformer.side_linears.2.weight"] = torch.zeros(64, 65)
    src = tmp_path / "bad.pth"
    _save_published(src, sd)
    assert convert_main([str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "1 missing key(s):" in err and "visual.transformer.side_transformer.1.mse.bn2.bias" in err
    assert "1 unknown key(s):" in err and "visual.transformer.side_transformer.0.extra.weight" in err
    assert "1 mis-shaped key(s):" in err and "visual.transformer.side_linears.2.weight: (64, 65)" in err
    assert not os.path.exists(tmp_path / "out" / "model.safetensors")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_malicious_pickle_is_refused_and_never_run(tmp_path, capsys):
    _Payload.marker = str(tmp_path / "pwned")
    src = tmp_path / "evil.pth"
    torch.save({"epoch": 1, "model_state_dict": {"fc.weight": torch.zeros(2, 2)}, "x": _Payload()}, src)
    assert convert_main([str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "refused" in err and "system" in err
    assert "False" not in err  # never suggests turning the safety off
    assert not os.path.exists(_Payload.marker)


def test_bad_paths_and_unknown_backbone_exit_2(tmp_path, capsys):
    assert convert_main([str(tmp_path / "nope.pth"), str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    sd = {"visual.conv1.weight": torch.zeros(96, 3, 8, 8), "visual.positional_embedding": torch.zeros(65, 96),
          "visual.transformer.side_spatial_position_embeddings": torch.zeros(64, 64), "fc.weight": torch.zeros(3, 64),
          "visual.transformer.side_transformer.0.mse.conv1.weight": torch.zeros(4, 64, 1, 1)}
    _save_published(tmp_path / "odd.pth", sd)
    assert convert_main([str(tmp_path / "odd.pth"), str(tmp_path / "out")]) == 2
    assert "--backbone" in capsys.readouterr().err


def test_l14_shapes_are_inferred_and_convert_without_allocating():
    """ViT-L/14 (24 layers, width 1024, patch 14), side width 512, 400 classes: the published names of
    our meta model, in the published layout, are recognised and convert back to exactly our shapes."""
    from tdsclip.convert import convert_state_dict, infer_config

    with torch.device("meta"):
        model = TDSCLIP(TDSCLIPConfig(backbone="ViT-L-14", side_dim=512, num_classes=400))
    ours = model.state_dict()
    published = {published_name(k): (v.flatten(-2) if ".td_adapter." in k and k.endswith(("down.weight", "up.weight"))
                                     else v) for k, v in ours.items()}
    assert published["visual.transformer.side_transformer.23.mse.conv1.weight"].shape == (32, 512, 1, 1)
    values = infer_config(published)
    assert (values["backbone"], values["side_dim"], values["num_classes"], values["reduction"], values["image_size"]) \
        == ("ViT-L-14", 512, 400, 16, 224)
    expected = {k: (tuple(v.shape), v.dtype) for k, v in ours.items()}
    converted = convert_state_dict(published, expected)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: s for k, (s, _) in expected.items()}
