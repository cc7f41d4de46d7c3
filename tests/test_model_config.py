"""TDSCLIPConfig: defaults, YAML, command-line overrides, and clear errors naming the field."""
import pytest

from tdsclip import TDSCLIPConfig
from tdsclip.config import backbone_geometry


def test_defaults_are_the_published_b16_setup():
    cfg = TDSCLIPConfig()
    assert (cfg.backbone, cfg.side_dim, cfg.num_classes, cfg.num_frames) == ("ViT-B-16", 320, 174, 8)
    assert (cfg.alpha, cfg.reduction, cfg.pool_kernel) == (0.5, 16, 3)
    assert (cfg.stem_padding, cfg.td_variant, cfg.fused_ops, cfg.grad_checkpoint) == ("published", "gated", True, False)
    assert cfg.grid == (14, 14) and cfg.num_heads == 5 and cfg.patch_size == 16
    assert TDSCLIPConfig(backbone="ViT-L-14", side_dim=512).grid == (16, 16)
    assert TDSCLIPConfig(backbone="tiny", side_dim=64).grid == (4, 4)


def test_yaml_round_trip_and_model_section(tmp_path):
    cfg = TDSCLIPConfig(backbone="tiny", side_dim=128, num_classes=7, td_variant="plain", fused_ops=False)
    path = tmp_path / "m.yaml"
    path.write_text(cfg.to_yaml())
    assert TDSCLIPConfig.from_yaml(str(path)) == cfg
    train = tmp_path / "train.yaml"
    train.write_text("name: x\nmodel:\n  backbone: tiny\n  side_dim: 64\n  num_frames: 2\noptim:\n  lr: 0.1\n")
    loaded = TDSCLIPConfig.from_yaml(str(train))
    assert (loaded.backbone, loaded.side_dim, loaded.num_frames) == ("tiny", 64, 2)
    with pytest.raises(ValueError, match="unknown config key 'model.lr'"):
        TDSCLIPConfig.from_yaml(str(train), section="optim")


def test_override_converts_types_in_place():
    cfg = TDSCLIPConfig(backbone="tiny", side_dim=64)
    out = cfg.override(["side_dim=512", "fused_ops=false", "alpha=1", "model.num_frames=16", "image_size=null",
                        "drop_path=1e-1", "grad_checkpoint=yes", "stem_padding=aligned"])
    assert out is cfg
    assert cfg.side_dim == 512 and isinstance(cfg.side_dim, int)
    assert cfg.fused_ops is False and cfg.grad_checkpoint is True
    assert cfg.alpha == 1.0 and isinstance(cfg.alpha, float)
    assert cfg.num_frames == 16 and cfg.image_size is None and cfg.drop_path == 0.1
    assert cfg.stem_padding == "aligned"


@pytest.mark.parametrize("item, pattern", [
    ("side_dims=64", r"unknown config key 'model.side_dims' \(did you mean 'model.side_dim'\?\)"),
    ("side_dim=abc", "model.side_dim: expected an integer, got 'abc'"),
    ("fused_ops=maybe", "model.fused_ops: expected true or false, got 'maybe'"),
    ("side_dim", "key=value"),
    ("alpha=x", "model.alpha: expected a finite number, got 'x'"),
])
def test_override_errors_name_the_key(item, pattern):
    cfg = TDSCLIPConfig(backbone="tiny", side_dim=64)
    with pytest.raises(ValueError, match=pattern):
        cfg.override([item])
    assert cfg.side_dim == 64  # unchanged on error


def test_failed_override_leaves_config_unchanged():
    cfg = TDSCLIPConfig(backbone="tiny", side_dim=64)
    with pytest.raises(ValueError, match="side_dim"):
        cfg.override(["num_classes=3", "side_dim=100"])
    assert cfg.num_classes == 174 and cfg.side_dim == 64


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(side_dim=100), "side_dim must be a positive multiple of 64"),
    (dict(side_dim=0), "side_dim"),
    (dict(backbone="ViT-X-99"), "backbone 'ViT-X-99'"),
    (dict(backbone="RN50"), "backbone 'RN50' is not a plain open_clip VisionTransformer"),
    (dict(pool_kernel=4), "pool_kernel must be a positive odd"),
    (dict(num_frames=0), "num_frames must be >= 1"),
    (dict(image_size=100), "image_size must be a positive multiple of the patch size 16"),
    (dict(backbone="ViT-L-14", side_dim=512, image_size=224 + 16), "patch size 14"),
    (dict(reduction=7), "reduction must be a positive divisor of side_dim"),
    (dict(stem_padding="same"), "stem_padding must be one of published, aligned"),
    (dict(td_variant="fancy"), "td_variant must be one of gated, plain"),
    (dict(num_classes=0), "num_classes"),
    (dict(backbone_dtype="int8"), "backbone_dtype"),
    (dict(drop_path=1.5), "drop_path must be in"),
    (dict(pretrained="/no/such/file.pt"), "no such checkpoint file"),
    (dict(backbone="tiny", side_dim=64, pretrained="openai"), "'tiny' backbone has no published weights"),
])
def test_bad_config_is_a_clear_value_error(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TDSCLIPConfig(**kwargs)


def test_wrong_types_are_type_errors():
    with pytest.raises(TypeError, match="side_dim must be an integer"):
        TDSCLIPConfig(side_dim=320.0)
    with pytest.raises(TypeError, match="fused_ops must be a bool"):
        TDSCLIPConfig(fused_ops="yes")
    with pytest.raises(ValueError, match="must be a mapping of keys"):
        TDSCLIPConfig.from_dict([("side_dim", 64)])


def test_open_clip_tags_and_other_vits_are_accepted():
    assert TDSCLIPConfig(pretrained="openai").pretrained == "openai"
    with pytest.raises(ValueError, match="neither an existing checkpoint file nor an open_clip tag"):
        TDSCLIPConfig(pretrained="not-a-tag")
    assert backbone_geometry("ViT-B-32") == (32, 224)
    assert TDSCLIPConfig(backbone="ViT-B-32", side_dim=64).grid == (7, 7)
