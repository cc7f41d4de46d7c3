"""``M2CLIPConfig``: everything that defines an M2-CLIP model (docs/m2clip.md), validated on creation.

Selected by ``arch: m2clip`` in a config's ``model:`` section (tdsclip.archs). Construction, YAML,
``key=value`` overrides and the value checks are TDS-CLIP's (tdsclip.config), shared, not copied.
Defaults are the paper's ViT-B/16 model with the choices of the authors' code where the paper is silent
(docs/m2clip.md lists each one and why).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..config import ModelConfig, _check_int, _check_number, _check_type, _choice, validate_frozen_tower
from ..dist.config import WINDOW_OFFSETS  # window offsets of k frames per segment, centre first (as DiST's)

ADAPTER_POSITIONS = ("pre_attn", "pre_mlp")
# "tiny": the random test tower's text side (a 3-layer, width-64 open_clip text transformer) and the
# joint embedding width (= text width, as the cross-attention of the CMLM head needs).
TINY_TEXT_CFG = dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=3)
TINY_EMBED_DIM = 64


@dataclass
class M2CLIPConfig(ModelConfig):
    arch: str = "m2clip"                    # model family (tdsclip.archs); always "m2clip" for this class
    # -- frozen CLIP (vision + text towers)
    backbone: str = "ViT-B-16"              # open_clip model name or "tiny"
    pretrained: Optional[str] = None        # None (random), an open_clip tag ("openai"), or a checkpoint path
    quick_gelu: Optional[bool] = None       # None: as the pretrained tag says (OpenAI weights need QuickGELU)
    backbone_dtype: str = "float32"         # storage dtype of the frozen weights
    image_size: Optional[int] = None        # None: the backbone's native size
    num_frames: int = 8                     # T segments the loader samples (each a 5-frame window)
    segment_frames: int = 1                 # frames per segment the ViT sees: 1 = the window's centre (the
    #                                         paper's plain T-frame sampler); 2 = centre and next, 3 = -1..+1,
    #                                         5 = the whole window (denser sampling: T x segment_frames frames)
    num_classes: int = 400
    # -- TED-Adapters (visual)
    adapter_width: int = 384                # bottleneck of the TE and TD paths
    adapter_layers: int = 12                # adapters in the last `adapter_layers` blocks (12 = all of B/16)
    adapter_position: str = "pre_attn"      # pre_attn (paper, issue #15) | pre_mlp (the authors' released B/16 config)
    te_kernel: int = 3                      # temporal kernel of the enhancement path (depthwise Conv1d)
    td_kernel: int = 3                      # spatial kernel of the difference path (depthwise Conv2d, k x k)
    frame_adapter: bool = True              # temporal adapter on the per-frame embeddings (authors' t_adapter)
    # -- text branch
    prompt: str = "a video of {}"           # class-name prompt
    text_adapter_width: int = 384           # Houlsby Text-Adapter bottleneck (one, before the last FFN)
    # -- multi-task decoder: loss = w_c * contrastive + w_cmc * CMC + w_vc * VC + w_mlm * CMLM
    loss_contrastive: float = 0.5
    loss_cmc: float = 0.5
    loss_vc: float = 1.0
    loss_mlm: float = 0.1
    mask_ratio: float = 0.2                 # fraction of a class name's words masked for the CMLM head
    head_dropout: float = 0.5               # dropout before the visual classifier
    # -- execution
    fused_ops: bool = True                  # tds_kernels.temporal_adjacent_diff vs plain PyTorch
    grad_checkpoint: bool = False           # checkpoint each backbone block (with its adapter)

    def __post_init__(self):
        self.validate()


    def validate(self) -> None:
        if self.arch != "m2clip":
            raise ValueError(f"arch: M2CLIPConfig is the config of arch 'm2clip', got {self.arch!r}")
        validate_frozen_tower(self)
        for name in ("num_frames", "num_classes", "adapter_width", "text_adapter_width"):
            _check_int(getattr(self, name), name)
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        _check_int(self.segment_frames, "segment_frames")
        if self.segment_frames not in WINDOW_OFFSETS:
            raise ValueError(f"segment_frames must be one of {sorted(WINDOW_OFFSETS)} (frames of a 5-frame window), "
                             f"got {self.segment_frames}")
        _check_int(self.adapter_layers, "adapter_layers")
        if self.adapter_layers < 0:
            raise ValueError(f"adapter_layers must be >= 0, got {self.adapter_layers}")
        _choice(self.adapter_position, ADAPTER_POSITIONS, "adapter_position")
        for name in ("te_kernel", "td_kernel"):
            _check_int(getattr(self, name), name)
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer (1, 3, 5), got {getattr(self, name)}")
        _check_type(self.prompt, str, "prompt")
        if self.prompt.count("{}") != 1:
            raise ValueError(f"prompt must contain exactly one '{{}}' for the class name, got {self.prompt!r}")
        for name in ("loss_contrastive", "loss_cmc", "loss_vc", "loss_mlm"):
            _check_number(getattr(self, name), name)
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("mask_ratio", "head_dropout"):
            _check_number(getattr(self, name), name)
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("frame_adapter", "fused_ops", "grad_checkpoint"):
            _check_type(getattr(self, name), bool, name)


assert {f.name for f in dataclasses.fields(M2CLIPConfig)} >= {"num_frames", "num_classes", "fused_ops",
                                                                "grad_checkpoint"}  # tdsclip.archs contract
