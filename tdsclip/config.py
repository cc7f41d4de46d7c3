"""``TDSCLIPConfig``: everything that defines a TDS-CLIP model (SPEC §1–3), validated on creation.

Load it from YAML (``TDSCLIPConfig.from_yaml(path)``), from a dict (``from_dict``: the ``model``
section of a training config), and override fields from the command line::

    cfg = TDSCLIPConfig.from_yaml("b16.yaml").override(["side_dim=512", "fused_ops=false"])

Every problem is a ``ValueError`` (``TypeError`` for a value of the wrong type) that names the field.
Mixed precision is not a model setting: the trainer wraps the forward in ``torch.autocast``
(``runtime.amp``); ``backbone_dtype`` only picks the storage dtype of the frozen weights.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from typing import Optional

import yaml

# The built-in backbones: patch size and native image size of the vision tower. Other open_clip
# ViT configs are accepted too (looked up in open_clip, which is slow to import, only when used).
KNOWN_BACKBONES = {"ViT-B-16": (16, 224), "ViT-L-14": (14, 224), "tiny": (16, 64)}
# "tiny": a small random ViT for tests and the demo (width 64, 3 blocks, 4 heads, patch 16 at 64 px).
TINY_VISION_CFG = dict(image_size=64, patch_size=16, width=64, layers=3, head_width=16, mlp_ratio=4.0)

STEM_PADDINGS = ("published", "aligned")
TD_VARIANTS = ("gated", "plain")
BACKBONE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class TDSCLIPConfig:
    arch: str = "tdsclip"                   # model family (tdsclip.archs); always "tdsclip" for this class
    # -- frozen spatial encoder (SPEC §2)
    backbone: str = "ViT-B-16"              # open_clip model name (ViT-B-16, ViT-L-14, ...) or "tiny"
    pretrained: Optional[str] = None        # None (random), an open_clip tag ("openai"), or a checkpoint path
    quick_gelu: Optional[bool] = None       # None: as the pretrained tag says (OpenAI weights need QuickGELU)
    backbone_dtype: str = "float32"         # storage dtype of the frozen weights: float32 | float16 | bfloat16
    image_size: Optional[int] = None        # None: the backbone's native size (224; 64 for "tiny")
    # -- input (SPEC §1)
    num_frames: int = 8                     # T segments per clip (the model itself accepts any T)
    # -- side network (SPEC §3)
    side_dim: int = 320                     # d (320 for B/16, 512 for L/14 in the published configs)
    num_classes: int = 174
    alpha: float = 0.5                      # weight of the motion stem (paper variant: 1.0)
    reduction: int = 16                     # TD-Adapter r: narrow width d/r
    pool_kernel: int = 3                    # TD-Adapter temporal max-pool window k (odd)
    stem_padding: str = "published"         # published (1,1,1) | aligned (1,0,0)
    td_variant: str = "gated"               # gated (published) | plain (the paper's form)
    drop_path: float = 0.0                  # stochastic depth on the side blocks' residual branches (max rate)
    head_dropout: float = 0.0               # dropout before the classifier
    # -- execution
    fused_ops: bool = True                  # tds_kernels fused ops (automatic backend) vs plain PyTorch
    grad_checkpoint: bool = False           # checkpoint each side block (use_reentrant=False)

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict | None) -> "TDSCLIPConfig":
        """Builds a config from a mapping (e.g. the ``model`` section of a training YAML); values are
        converted to the field types, an unknown key is an error that names it."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise TypeError(f"TDSCLIPConfig: expected a mapping of fields, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            _check_key(key, cls.field_names())
            kwargs[key] = _coerce(value, hints[key], key)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str, section: str | None = None) -> "TDSCLIPConfig":
        """Reads a YAML file: its top-level mapping, or its ``model:`` section if it has one (a
        training config), or the section named by ``section``."""
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        if section is not None:
            if not isinstance(raw.get(section), dict):
                raise ValueError(f"{path}: no mapping section {section!r}")
            raw = raw[section]
        elif isinstance(raw.get("model"), dict):
            raw = raw["model"]
        return cls.from_dict(raw)

    def override(self, items: list[str] | tuple[str, ...]) -> "TDSCLIPConfig":
        """Applies ``key=value`` strings (``side_dim=512``, ``fused_ops=false``, ``pretrained=null``;
        a ``model.`` prefix is accepted) in place, re-validates, and returns ``self``. On an error the
        config is left unchanged."""
        hints = typing.get_type_hints(type(self))
        changes = {}
        for item in items:
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(f"override {item!r} is not of the form key=value (e.g. side_dim=512)")
            key, text = item.split("=", 1)
            key = key.strip()
            if key.startswith("model."):
                key = key[len("model."):]
            _check_key(key, self.field_names())
            changes[key] = _coerce(_parse_value(text), hints[key], key)
        new = dataclasses.replace(self, **changes)  # validates
        for key, value in dataclasses.asdict(new).items():
            setattr(self, key, value)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------ derived values
    @property
    def patch_size(self) -> int:
        return backbone_geometry(self.backbone)[0]

    @property
    def resolved_image_size(self) -> int:
        return self.image_size if self.image_size is not None else backbone_geometry(self.backbone)[1]

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid h × w (the same for both stem paddings: SPEC §3)."""
        n = self.resolved_image_size // self.patch_size
        return n, n

    @property
    def num_heads(self) -> int:
        return self.side_dim // 64

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.arch != "tdsclip":
            raise ValueError(f"arch: TDSCLIPConfig is the config of arch 'tdsclip', got {self.arch!r}")
        validate_frozen_tower(self)
        _check_int(self.num_frames, "num_frames")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        _check_int(self.side_dim, "side_dim")
        if self.side_dim <= 0 or self.side_dim % 64:
            raise ValueError(f"side_dim must be a positive multiple of 64 (attention heads of width 64), "
                             f"got {self.side_dim}")
        _check_int(self.num_classes, "num_classes")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        _check_number(self.alpha, "alpha")
        _check_int(self.reduction, "reduction")
        if self.reduction < 1 or self.side_dim % self.reduction:
            raise ValueError(f"reduction must be a positive divisor of side_dim ({self.side_dim}), "
                             f"got {self.reduction}")
        _check_int(self.pool_kernel, "pool_kernel")
        if self.pool_kernel < 1 or self.pool_kernel % 2 == 0:
            raise ValueError(f"pool_kernel must be a positive odd integer (3, 5, 7), got {self.pool_kernel}")
        _choice(self.stem_padding, STEM_PADDINGS, "stem_padding")
        _choice(self.td_variant, TD_VARIANTS, "td_variant")
        for name in ("drop_path", "head_dropout"):
            value = getattr(self, name)
            _check_number(value, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        _check_type(self.fused_ops, bool, "fused_ops")
        _check_type(self.grad_checkpoint, bool, "grad_checkpoint")


def validate_frozen_tower(cfg) -> None:
    """Checks the frozen-tower fields every architecture's config shares (backbone, pretrained,
    quick_gelu, backbone_dtype, image_size); an empty ``pretrained`` becomes None."""
    _check_type(cfg.backbone, str, "backbone")
    patch, _native = backbone_geometry(cfg.backbone)  # raises on an unknown backbone
    if cfg.pretrained is not None:
        _check_type(cfg.pretrained, str, "pretrained")
        if cfg.pretrained.strip() == "":
            cfg.pretrained = None
    if cfg.pretrained is not None:
        _check_pretrained(cfg.backbone, cfg.pretrained)
    if cfg.quick_gelu is not None:
        _check_type(cfg.quick_gelu, bool, "quick_gelu")
    _choice(cfg.backbone_dtype, BACKBONE_DTYPES, "backbone_dtype")
    if cfg.image_size is not None:
        _check_int(cfg.image_size, "image_size")
        if cfg.image_size <= 0 or cfg.image_size % patch:
            raise ValueError(f"image_size must be a positive multiple of the patch size {patch} of "
                             f"{cfg.backbone}, got {cfg.image_size}")


# ---------------------------------------------------------------------------------------------
# backbone lookup

def backbone_geometry(name: str) -> tuple[int, int]:
    """(patch size, native image size) of a backbone name; ValueError naming the field if unknown."""
    if name in KNOWN_BACKBONES:
        return KNOWN_BACKBONES[name]
    vision = _open_clip_vision_cfg(name)
    patch, size = vision.get("patch_size"), vision.get("image_size", 224)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"backbone {name!r}: only square input sizes are supported, got {size}")
        size = size[0]
    return int(patch), int(size)


def _open_clip_vision_cfg(name: str) -> dict:
    import open_clip  # slow import: only for names outside KNOWN_BACKBONES

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        vits = [m for m in open_clip.list_models() if m.startswith("ViT-")]
        close = difflib.get_close_matches(name, vits + ["tiny"], n=3)
        raise ValueError(f"backbone {name!r} is not an open_clip model name or 'tiny'"
                         + (f" (did you mean {', '.join(close)}?)" if close else "")
                         + "; e.g. ViT-B-16, ViT-L-14, tiny")
    vision = cfg.get("vision_cfg", {})
    if vision.get("timm_model_name") or isinstance(vision.get("layers"), (tuple, list)) \
            or "patch_size" not in vision:
        raise ValueError(f"backbone {name!r} is not a plain open_clip VisionTransformer (timm / ResNet towers "
                         "are not supported); use e.g. ViT-B-16 or ViT-L-14")
    return vision


def _check_pretrained(backbone: str, pretrained: str) -> None:
    if os.path.isfile(pretrained):
        return
    if backbone == "tiny":
        raise ValueError(f"pretrained {pretrained!r}: the 'tiny' backbone has no published weights; give a "
                         "local checkpoint path that exists, or null")
    if os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise ValueError(f"pretrained {pretrained!r}: no such checkpoint file")
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(backbone)
    if pretrained not in tags:
        raise ValueError(f"pretrained {pretrained!r} is neither an existing checkpoint file nor an open_clip "
                         f"tag of {backbone} ({', '.join(tags) or 'none'})")


# ---------------------------------------------------------------------------------------------
# value checks and conversion

def _check_key(key: str, names: list[str]) -> None:
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model config key {key!r}{hint}; known keys: {', '.join(names)}")


def _check_type(value, tp, name: str) -> None:
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        raise TypeError(f"{name} must be a {tp.__name__}, got {value!r}")


def _check_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")


def _check_number(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")


def _choice(value, choices, name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _parse_value(text: str):
    """A command-line value: YAML scalars (true, null, 8, 0.5), plus 1e-4-style floats that YAML 1.1
    reads as strings."""
    text = text.strip()
    if _FLOAT.match(text) and not re.match(r"^[+-]?\d+$", text):
        return float(text)
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value, tp, name: str):
    """Converts ``value`` to the field type ``tp``; TypeError/ValueError naming the field if it can't."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _coerce(value, inner, name)
    if value is None:
        raise TypeError(f"{name} cannot be null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{name} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value
