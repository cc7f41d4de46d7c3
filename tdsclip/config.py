"""``TDSCLIPConfig``: everything that defines a TDS-CLIP model (docs/model.md §1–3), validated on creation.

Load it from YAML (``TDSCLIPConfig.from_yaml(path)``), from a dict (``from_dict``: the ``model``
section of a training config), and override fields from the command line::

    cfg = TDSCLIPConfig.from_yaml("b16.yaml").override(["side_dim=512", "fused_ops=false"])

Values and keys follow the rules of every config section (``tdsclip.config_rules``). Every problem is a
``ValueError`` that names the field (``TypeError`` for a value of the wrong type given from Python).
Mixed precision is not a model setting: the trainer wraps the forward in ``torch.autocast``
(``runtime.amp``); ``backbone_dtype`` only picks the storage dtype of the frozen weights.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from typing import Optional

import yaml

from .config_rules import check_int as _check_int  # noqa: F401  (re-exported: the configs' validate())
from .config_rules import check_known, coerce, coerce_fields, field_types, load_yaml, split_override

# The built-in backbones: patch size and native image size of the vision tower. Other open_clip
# ViT configs are accepted too (looked up in open_clip, which is slow to import, only when used).
# memory_mode (fused_ops only): what the side block's MLP keeps for backward, see docs/model.md §4 and
# bench/target_notes.md. "lean": its input x only (Linear1 and GELU recomputed in backward, one extra GEMM);
# "fast": x and the pre-GELU hidden h (4d per token per block more, no GEMM recomputed).
MEMORY_MODES = ("lean", "fast")
KNOWN_BACKBONES = {"ViT-B-16": (16, 224), "ViT-L-14": (14, 224), "tiny": (16, 64)}
# "tiny": a small random ViT for tests and the demo (width 64, 3 blocks, 4 heads, patch 16 at 64 px).
TINY_VISION_CFG = dict(image_size=64, patch_size=16, width=64, layers=3, head_width=16, mlp_ratio=4.0)

STEM_PADDINGS = ("published", "aligned")
TD_VARIANTS = ("gated", "plain")
BACKBONE_DTYPES = ("float32", "float16", "bfloat16")


class ModelConfig:
    """What every architecture's model config (``model.arch``: TDS-CLIP's below, DiST's, M2-CLIP's, AM
    flow's) shares: construction from a mapping / YAML / ``key=value`` overrides under the one set of rules
    of ``tdsclip.config_rules``, serialisation, and the frozen tower's geometry (``backbone``,
    ``image_size``). Subclasses are dataclasses with a ``validate()`` run on construction."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict | None) -> "ModelConfig":
        """Builds a config from a mapping (e.g. the ``model`` section of a training YAML); values are
        converted to the field types and unknown keys rejected by the rules of ``tdsclip.config_rules``."""
        return cls(**coerce_fields(cls, values, "model"))

    @classmethod
    def from_yaml(cls, path: str, section: str | None = None) -> "ModelConfig":
        """Reads a YAML file: its top-level mapping, or its ``model:`` section if it has one (a
        training config), or the section named by ``section``."""
        raw = load_yaml(path)
        if section is not None:
            if not isinstance(raw.get(section), dict):
                raise ValueError(f"{path}: no mapping section {section!r}")
            raw = raw[section]
        elif isinstance(raw.get("model"), dict):
            raw = raw["model"]
        return cls.from_dict(raw)

    def override(self, items: list[str] | tuple[str, ...]) -> "ModelConfig":
        """Applies ``key=value`` strings (``side_dim=512``, ``fused_ops=false``, ``pretrained=null``;
        a ``model.`` prefix is accepted) in place, re-validates, and returns ``self``. On an error the
        config is left unchanged."""
        types_ = field_types(type(self))
        changes = {}
        for item in items:
            path, value = split_override(item)
            key = ".".join(path[1:] if path[0] == "model" and len(path) > 1 else path)
            check_known(key, types_, "model")
            changes[key] = coerce(value, types_[key], f"model.{key}")
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
        """The token grid h × w (the same for both stem paddings: docs/model.md §3)."""
        n = self.resolved_image_size // self.patch_size
        return n, n



@dataclass
class TDSCLIPConfig(ModelConfig):
    arch: str = "tdsclip"                   # model family (tdsclip.archs); always "tdsclip" for this class
    # -- frozen spatial encoder (docs/model.md §2)
    backbone: str = "ViT-B-16"              # open_clip model name (ViT-B-16, ViT-L-14, hf-hub:org/repo) or "tiny"
    pretrained: Optional[str] = None        # None (random), an open_clip tag ("openai"), or a checkpoint path
    quick_gelu: Optional[bool] = None       # None: the tag's flag; else QuickGELU for ViT-B-16/L-14 (published)
    backbone_dtype: str = "float32"         # storage dtype of the frozen weights: float32 | float16 | bfloat16
    image_size: Optional[int] = None        # None: the backbone's native size (224; 64 for "tiny")
    # -- input (docs/model.md §1)
    num_frames: int = 8                     # T segments per clip (the model itself accepts any T)
    # -- side network (docs/model.md §3)
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
    memory_mode: str = "lean"               # fused side MLP: lean (keeps x, recomputes Linear1) | fast (keeps h)

    def __post_init__(self):
        self.validate()

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
        if self.memory_mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, got {self.memory_mode!r}")


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

    cfg = _hub_model_cfg(name) if name.startswith("hf-hub:") else open_clip.get_model_config(name)
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


def _hub_model_cfg(name: str) -> dict:
    """The open_clip model config of an ``hf-hub:org/repo`` backbone (its open_clip_config.json)."""
    import json

    from huggingface_hub import hf_hub_download

    repo = name[len("hf-hub:"):]
    try:
        path = hf_hub_download(repo, "open_clip_config.json")
    except Exception as exc:  # offline without a cached copy, no such repository
        raise ValueError(f"backbone {name!r}: cannot read open_clip_config.json of {repo!r} from the Hugging Face "
                         f"hub ({type(exc).__name__}: {exc})") from exc
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("model_cfg", {})


def _check_pretrained(backbone: str, pretrained: str) -> None:
    if backbone.startswith("hf-hub:"):
        raise ValueError(f"pretrained {pretrained!r}: an hf-hub: backbone brings its own weights; set pretrained "
                         "to null")
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
# value checks of validate() (conversion of incoming values: tdsclip.config_rules)

def _check_type(value, tp, name: str) -> None:
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        raise TypeError(f"{name} must be a {tp.__name__}, got {value!r}")


def _check_number(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")


def _choice(value, choices, name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
