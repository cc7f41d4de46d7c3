"""``AMFlowConfig``: everything that defines an AM-flow model (docs/amflow.md), validated on creation.

The construction helpers (``from_dict``, ``from_yaml``, ``override``, ``to_dict``, ``to_yaml``) are
inherited from :class:`tdsclip.config.ModelConfig`, as every architecture's config does; the geometry
properties are AM flow's own (timm DINOv2 backbones have patch 14).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import ModelConfig, _check_int, _check_number, _check_type, _choice

# name -> (library, model name, patch size, native image size, width, heads)
BACKBONES = {
    # DINOv2 ViT-B/14 (timm); native 518 px, run at 224 (16 x 16 patches) as in the paper's tables.
    "dinov2_vitb14": ("timm", "vit_base_patch14_dinov2", 14, 224, 768, 12),
    # the same timm architecture shrunk for tests and the demo: width 64, 3 blocks, 4 heads, patch 16 at 64 px
    "dinov2_tiny": ("timm", "vit_base_patch14_dinov2", 16, 64, 64, 4),
    # CLIP ViT-B/16 (open_clip)
    "ViT-B-16": ("open_clip", "ViT-B-16", 16, 224, 768, 12),
    # tdsclip's tiny open_clip tower (tdsclip.config.TINY_VISION_CFG)
    "tiny": ("open_clip", "tiny", 16, 64, 64, 4),
}
TINY_TIMM_KWARGS = dict(embed_dim=64, depth=3, num_heads=4, patch_size=16)
TEMPORAL_MODULES = ("tcn", "lstm", "transformer")
AM_HEADS = ("mean", "per_head")
TOKEN_POOLS = ("learned", "mean", "slots")


@dataclass
class AMFlowConfig(ModelConfig):
    arch: str = "amflow"                    # model family (tdsclip.archs); always "amflow" for this class
    # -- frozen image model
    backbone: str = "dinov2_vitb14"         # dinov2_vitb14 | ViT-B-16 | dinov2_tiny | tiny (tests, demo)
    pretrained: Optional[str] = None        # None (random); "timm" (DINOv2 from the HF hub) or an open_clip tag
                                            # ("openai") for CLIP; or a local checkpoint file
    quick_gelu: Optional[bool] = None       # CLIP only: None follows the pretrained tag
    image_size: Optional[int] = None        # None: the backbone's native size (224; 64 for the tiny ones)
    num_frames: int = 8                     # T segments per clip (the model accepts any T >= 1)
    num_classes: int = 174
    # -- AM flow and adapters
    blocks: Optional[list] = None           # 0-based blocks that get AM flow + adapters; None = all ("AM/12")
    am_heads: str = "mean"                  # mean: one map per frame (heads averaged) | per_head: one per head
    adapter_dim: Optional[int] = None       # W_down width; None = the backbone width (the paper's 28 M at B/14)
    adapter_scale: float = 0.1              # initial value of each adapter's learnable scale s
    flow_gain: float = 1.0                  # AM flow x flow_gain x sqrt(C/c) at the adapter input (1: the flow's
                                            # c channels weigh as much as LN(X)'s C channels; docs/amflow.md §2)
    align: bool = True                      # aligning encoder (moving cameras: K400, SSv2); false = vanilla AM flow
    align_heads: int = 12
    align_layers: int = 1
    align_mlp_ratio: float = 1.0            # feed-forward width / backbone width in the aligning encoder
    # -- temporal modules (two per adapted block) and heads
    temporal: str = "tcn"                   # tcn | lstm | transformer
    token_pool: str = "learned"             # tokens -> frame vector: learned per-token weights (mean at init) | mean
                                            # | slots: token_slots learned token weightings, concatenated
    token_slots: int = 4                    # slots only: K (the temporal module's input is K x adapter width)
    temporal_dim: Optional[int] = None      # hidden width; None = adapter width
    temporal_layers: int = 1                # TCN levels / LSTM layers / transformer layers
    temporal_heads: int = 8                 # transformer temporal module only
    tcn_kernel: int = 2                     # causal TCN kernel (Bai et al. 2018)
    head_dropout: float = 0.0
    # -- execution
    fused_ops: bool = True                  # SDPA + (sum_i q_i).k_j column sums; false: explicit N x N attention map
    grad_checkpoint: bool = False           # checkpoint each frozen block with its adapters (use_reentrant=False)


    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ derived values
    @property
    def library(self) -> str:
        return BACKBONES[self.backbone][0]

    @property
    def patch_size(self) -> int:
        return BACKBONES[self.backbone][2]

    @property
    def width(self) -> int:
        return BACKBONES[self.backbone][4]

    @property
    def resolved_image_size(self) -> int:
        return self.image_size if self.image_size is not None else BACKBONES[self.backbone][3]

    @property
    def resolved_adapter_dim(self) -> int:
        return self.adapter_dim if self.adapter_dim is not None else self.width

    @property
    def resolved_temporal_dim(self) -> int:
        return self.temporal_dim if self.temporal_dim is not None else self.resolved_adapter_dim

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.arch != "amflow":
            raise ValueError(f"arch: AMFlowConfig is the config of arch 'amflow', got {self.arch!r}")
        _check_type(self.backbone, str, "backbone")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.pretrained is not None:
            _check_type(self.pretrained, str, "pretrained")
            if self.pretrained.strip() == "":
                self.pretrained = None
        if self.quick_gelu is not None:
            _check_type(self.quick_gelu, bool, "quick_gelu")
        patch = self.patch_size
        if self.image_size is not None:
            _check_int(self.image_size, "image_size")
            if self.image_size <= 0 or self.image_size % patch:
                raise ValueError(f"image_size must be a positive multiple of the patch size {patch} of "
                                 f"{self.backbone}, got {self.image_size}")
        for name in ("num_frames", "num_classes", "align_heads", "align_layers", "temporal_layers",
                     "temporal_heads", "tcn_kernel", "token_slots"):
            _check_int(getattr(self, name), name)
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.blocks is not None:
            if not isinstance(self.blocks, (list, tuple)) or not self.blocks:
                raise TypeError(f"blocks must be null (all blocks) or a non-empty list of block indices, "
                                f"got {self.blocks!r}")
            for b in self.blocks:
                _check_int(b, "blocks[]")
            self.blocks = sorted(set(int(b) for b in self.blocks))
            if self.blocks[0] < 0:
                raise ValueError(f"blocks: indices are 0-based and >= 0, got {self.blocks}")
        _choice(self.am_heads, AM_HEADS, "am_heads")
        for name in ("adapter_dim", "temporal_dim"):
            value = getattr(self, name)
            if value is not None:
                _check_int(value, name)
                if value < 1:
                    raise ValueError(f"{name} must be >= 1 (or null), got {value}")
        _check_number(self.adapter_scale, "adapter_scale")
        if self.adapter_scale == 0:  # with W_up = 0 at init neither s nor W_up would ever get a gradient
            raise ValueError("adapter_scale must not be 0 (with the zero-initialised W_up the adapters "
                             "would never train); use e.g. 0.1")
        _check_number(self.flow_gain, "flow_gain")
        if self.flow_gain <= 0:
            raise ValueError(f"flow_gain must be > 0, got {self.flow_gain}")
        _check_number(self.align_mlp_ratio, "align_mlp_ratio")
        if self.align_mlp_ratio <= 0:
            raise ValueError(f"align_mlp_ratio must be > 0, got {self.align_mlp_ratio}")
        _check_type(self.align, bool, "align")
        if self.align and self.width % self.align_heads:
            raise ValueError(f"align_heads ({self.align_heads}) must divide the width {self.width} of "
                             f"{self.backbone} (e.g. 12 for ViT-B, 4 for the tiny backbones)")
        _choice(self.temporal, TEMPORAL_MODULES, "temporal")
        _choice(self.token_pool, TOKEN_POOLS, "token_pool")
        if self.temporal == "transformer" and self.resolved_temporal_dim % self.temporal_heads:
            raise ValueError(f"temporal_heads ({self.temporal_heads}) must divide temporal_dim "
                             f"({self.resolved_temporal_dim})")
        _check_number(self.head_dropout, "head_dropout")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        _check_type(self.fused_ops, bool, "fused_ops")
        _check_type(self.grad_checkpoint, bool, "grad_checkpoint")
