"""``DiSTConfig``: everything that defines a DiST model (docs/dist.md), validated on creation.

Same interface as :class:`tdsclip.config.TDSCLIPConfig` (``from_dict``, ``from_yaml``,
``override``, ``to_dict``, ``to_yaml`` and the derived ``patch_size`` / ``resolved_image_size`` /
``grid``): both inherit them from :class:`tdsclip.config.ModelConfig`, so every architecture's config
parses, coerces and reports errors identically. Widths left at ``None`` follow the backbone width C:
``temporal_dim = C/8`` (β = 1/8: 96 for B/16), ``integration_dim = C/2`` (α = 1/2: 384 for B/16).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import ModelConfig, _check_int, _check_number, _check_type, _choice, validate_frozen_tower
from ..config_rules import check_optional_positive_int

DENSE_SAMPLINGS = ("window", "segments")
INTEGRATION_RESIDUALS = ("final", "every")
HEADS = ("text", "linear")
STEM_INPUTS = ("frames", "differences")
HEAD_INITS = ("authors", "fan_in")
# Offsets from the centre (index 2 of the 5-frame window) of the γ dense frames of one segment in
# ``dense_sampling: window``: the sparse (centre) frame comes first in its group when it can, as in
# the authors' layout where the sparse frames are dense[::γ] (docs/dist.md "Dense frames").
WINDOW_OFFSETS = {1: (0,), 2: (0, 1), 3: (-1, 0, 1), 4: (-1, 0, 1, 2), 5: (-2, -1, 0, 1, 2)}


@dataclass
class DiSTConfig(ModelConfig):
    arch: str = "dist"                      # model family (tdsclip.archs); always "dist" for this class
    # -- frozen spatial encoder (as TDS-CLIP's: docs/model.md §2)
    backbone: str = "ViT-B-16"              # open_clip model name or "tiny"
    pretrained: Optional[str] = None        # None (random), an open_clip tag ("openai") or a checkpoint path
    quick_gelu: Optional[bool] = None       # None: as the pretrained tag says
    backbone_dtype: str = "float32"         # storage dtype of the frozen vision and text towers
    image_size: Optional[int] = None        # None: the backbone's native size
    # -- input
    num_frames: int = 8                     # segments the loader samples per clip (each a 5-frame window)
    gamma: int = 2                          # γ: dense frames per sparse frame
    dense_sampling: str = "window"          # window: γ frames of each segment's window; segments: the
    #                                         centres of all segments are dense, every γ-th one sparse
    # -- temporal encoder and integration branch
    temporal_dim: Optional[int] = None      # βC (None: C/8)
    integration_dim: Optional[int] = None   # αC (None: C/2)
    stem_kernel_t: int = 5                  # temporal kernel of the 3-D stem (authors: T_PATCH_SIZE 5)
    stem_input: str = "frames"              # frames (the paper's) | differences: the stem sees the differences of
    #                                         consecutive dense frames (docs/dist.md "Demo": raw frames stall there)
    temporal_kernel: int = 3                # T-Block and integration TConv kernel (authors: 3)
    temporal_mlp_ratio: float = 1.0         # T-Block hidden width / βC
    integration_mlp_ratio: float = 1.0      # integration FFN hidden width / αC
    integration_temporal_mlp_ratio: float = 0.25  # integration temporal FFN hidden width / αC
    integration_residual: str = "final"     # final (authors' code: Ŷ added once, after the last layer) | every
    pooling_layers: int = 2                 # adaptive-pooling layers of the head (authors: 2 SSv2, 4 K400)
    # -- head
    head: str = "text"                      # text: cosine/τ with frozen text embeddings | linear: classifier
    prompt: str = "{}"                      # class-name prompt ("{}": the name alone, as the authors)
    logit_scale: Optional[float] = None     # 1/τ (None: CLIP's, exp(logit_scale) of the text tower)
    num_classes: int = 174
    head_dropout: float = 0.0               # dropout before the projection
    head_init: str = "authors"              # authors: trunc-normal std 0.02 like every new layer | fan_in: the
    #                                         head's linear layers std 1/sqrt(fan_in) (docs/dist.md "Demo")
    # -- execution
    fused_ops: bool = True                  # no DiST op has a fused kernel (docs/dist.md): same model either way
    grad_checkpoint: bool = False           # checkpoint each DiST layer (use_reentrant=False)

    def __post_init__(self):
        self.validate()


    # ------------------------------------------------------------------ derived values
    @property
    def sparse_frames(self) -> int:
        """T: frames the frozen spatial encoder sees."""
        return self.num_frames if self.dense_sampling == "window" else self.num_frames // self.gamma

    @property
    def dense_frames(self) -> int:
        """γT: frames the temporal encoder sees."""
        return self.sparse_frames * self.gamma

    def widths(self, backbone_width: int) -> tuple[int, int]:
        """(βC, αC) for a backbone of width C."""
        return (self.temporal_dim or backbone_width // 8, self.integration_dim or backbone_width // 2)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.arch != "dist":
            raise ValueError(f"arch: DiSTConfig is the config of arch 'dist', got {self.arch!r}")
        validate_frozen_tower(self)
        _choice(self.dense_sampling, DENSE_SAMPLINGS, "dense_sampling")
        _choice(self.stem_input, STEM_INPUTS, "stem_input")
        for name in ("num_frames", "gamma", "stem_kernel_t", "temporal_kernel", "pooling_layers", "num_classes"):
            _check_int(getattr(self, name), name)
        if self.num_frames < 1 or self.num_classes < 1 or self.pooling_layers < 0:
            raise ValueError(f"num_frames and num_classes must be >= 1 and pooling_layers >= 0, got "
                             f"{self.num_frames}, {self.num_classes}, {self.pooling_layers}")
        if self.gamma < 1:
            raise ValueError(f"gamma must be >= 1, got {self.gamma}")
        if self.dense_sampling == "window" and self.gamma not in WINDOW_OFFSETS:
            raise ValueError(f"gamma must be 1..5 with dense_sampling=window (a segment's window holds 5 frames), "
                             f"got {self.gamma}; use dense_sampling=segments for more")
        if self.dense_sampling == "segments" and self.num_frames % self.gamma:
            raise ValueError(f"num_frames ({self.num_frames}) must be a multiple of gamma ({self.gamma}) with "
                             "dense_sampling=segments (every gamma-th segment is a sparse frame)")
        if self.stem_input == "differences" and self.dense_frames < 2:
            raise ValueError(f"stem_input=differences needs at least 2 dense frames (gamma * sparse frames), "
                             f"got {self.dense_frames}")
        for name in ("stem_kernel_t", "temporal_kernel"):
            value = getattr(self, name)
            if value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer (same-length temporal conv), got {value}")
        for name in ("temporal_dim", "integration_dim"):
            check_optional_positive_int(getattr(self, name), name)
        if self.integration_dim is not None and self.integration_dim > 64 and self.integration_dim % 64:
            raise ValueError(f"integration_dim must be at most 64 or a multiple of 64 (attention heads of width "
                             f"64 in the pooling layers), got {self.integration_dim}")
        for name in ("temporal_mlp_ratio", "integration_mlp_ratio", "integration_temporal_mlp_ratio"):
            value = getattr(self, name)
            _check_number(value, name)
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        _choice(self.integration_residual, INTEGRATION_RESIDUALS, "integration_residual")
        _choice(self.head, HEADS, "head")
        _choice(self.head_init, HEAD_INITS, "head_init")
        _check_type(self.prompt, str, "prompt")
        if self.prompt.count("{}") != 1:
            raise ValueError(f"prompt must hold exactly one '{{}}' for the class name, got {self.prompt!r}")
        if self.logit_scale is not None:
            _check_number(self.logit_scale, "logit_scale")
            if self.logit_scale <= 0:
                raise ValueError(f"logit_scale must be > 0, got {self.logit_scale}")
        _check_number(self.head_dropout, "head_dropout")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        _check_type(self.fused_ops, bool, "fused_ops")
        _check_type(self.grad_checkpoint, bool, "grad_checkpoint")
