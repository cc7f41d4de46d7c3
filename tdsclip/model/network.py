"""``TDSCLIP``: the whole model (docs/model.md §1–3) and ``build_tdsclip(config)``, the builder of the arch
"tdsclip" in ``tdsclip.archs`` (users call ``tdsclip.build_model``, which builds any architecture)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import TDSCLIPConfig
from ..hub import PretrainedMixin
from .backbone import FrozenViT, build_backbone
from .head import ClassifierHead
from .side_network import SideNetwork


def check_clips(clips: torch.Tensor, size: int, model: str) -> None:
    """The model contract's input check (tdsclip.archs): ``(B, T, 5, 3, size, size)``, uint8 or float;
    errors name ``model`` and what was wrong."""
    if not isinstance(clips, torch.Tensor):
        raise TypeError(f"{model}: clips must be a tensor, got {type(clips).__name__}")
    if clips.dim() != 6 or clips.shape[2] != 5 or clips.shape[3] != 3:
        raise ValueError(f"{model}: clips must be (B, T, 5, 3, H, W), got shape {tuple(clips.shape)}")
    if clips.shape[0] < 1 or clips.shape[1] < 1:
        raise ValueError(f"{model}: clips need B >= 1 and T >= 1, got shape {tuple(clips.shape)}")
    if clips.shape[4] != size or clips.shape[5] != size:
        raise ValueError(f"{model}: frames must be {size}x{size} (config image_size), got "
                         f"{clips.shape[4]}x{clips.shape[5]}")
    if clips.dtype != torch.uint8 and not clips.is_floating_point():
        raise TypeError(f"{model}: clips must be uint8 or floating point, got {clips.dtype}")


class TDSCLIP(PretrainedMixin, nn.Module):
    """TDS-CLIP: clips ``(B, T, 5, 3, H, W)`` → logits ``(B, num_classes)``.

    * ``clips``: uint8 or float pixel values in [0, 255]; for each of the T segments the 5-frame
      window ``i_t-2 … i_t+2`` (docs/model.md §1), H = W = ``config.resolved_image_size``. Any T ≥ 1 works.
    * ``backbone`` (:class:`FrozenViT`): frozen, eval mode, ``torch.no_grad()``, on the centre frames.
    * ``side`` (:class:`SideNetwork`) and ``head`` (:class:`ClassifierHead`): every parameter trainable
      (``requires_grad=True``); the backbone's are not.

    ``fused_ops`` picks tds_kernels' fused ops (best available backend) or the plain PyTorch
    reference for the SME stem, TD-Adapter and CLS shift, and the memory-lean forms of the side
    connection and MLP; the parameters, buffers and state_dict keys are the same either way.

    ``save_pretrained(dir)`` / ``TDSCLIP.from_pretrained(dir_or_hub_id)`` / ``push_to_hub(repo)``: the
    Hugging Face layout of :mod:`tdsclip.hub` (config.json + model.safetensors).
    """

    def __init__(self, config: TDSCLIPConfig):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.backbone: FrozenViT = build_backbone(config)
        grid = config.grid
        backend = None if config.fused_ops else "reference"
        self.side = SideNetwork(
            num_layers=self.backbone.num_layers, width=self.backbone.width, patch_size=config.patch_size, grid=grid,
            dim=config.side_dim, alpha=config.alpha, reduction=config.reduction, pool_kernel=config.pool_kernel,
            stem_padding=config.stem_padding, td_variant=config.td_variant, drop_path=config.drop_path,
            mean=self.backbone.mean, std=self.backbone.std, backend=backend, grad_checkpoint=config.grad_checkpoint)
        self.side.set_memory_mode(config.memory_mode)
        self.head = ClassifierHead(config.side_dim, config.num_classes, config.head_dropout)

    # ------------------------------------------------------------------ switches
    @property
    def fused_ops(self) -> bool:
        return self.config.fused_ops

    def set_fused_ops(self, enabled: bool) -> "TDSCLIP":
        """Switches between fused ops (``True``) and the plain PyTorch reference (``False``) in place."""
        self.config.fused_ops = bool(enabled)
        self.side.set_backend(None if enabled else "reference")
        return self

    @property
    def memory_mode(self) -> str:
        return self.config.memory_mode

    def set_memory_mode(self, mode: str) -> "TDSCLIP":
        """"lean" (the fused side MLP keeps its input only) or "fast" (also its pre-GELU hidden tensor: no
        GEMM recomputed in backward, 4d floats per token per block more). Only matters with fused_ops."""
        self.side.set_memory_mode(mode)
        self.config.memory_mode = mode
        return self

    @property
    def grad_checkpoint(self) -> bool:
        return self.side.grad_checkpoint

    def set_grad_checkpoint(self, enabled: bool) -> "TDSCLIP":
        self.config.grad_checkpoint = bool(enabled)
        self.side.grad_checkpoint = bool(enabled)
        return self

    def train(self, mode: bool = True) -> "TDSCLIP":
        super().train(mode)
        self.backbone.train(False)  # FrozenViT also refuses on its own; explicit for readers
        return self

    # ------------------------------------------------------------------ forward
    def check_clips(self, clips: torch.Tensor) -> None:
        check_clips(clips, self.config.resolved_image_size, "TDSCLIP")

    def forward_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """clips → final side tokens (B, T, N, d). The backbone's blocks are interleaved with the side
        layers so that each frozen output X_l can be freed as soon as it has been consumed."""
        self.check_clips(clips)
        B, T, _, _, H, W = clips.shape
        s = self.side.stem_tokens(clips)
        x = self.backbone.embed(clips[:, :, 2].reshape(B * T, 3, H, W))  # centre frames, no grad
        for index in range(self.backbone.num_layers):
            x = self.backbone.block(index, x, inplace_mlp=self.config.fused_ops)
            s = self.side.layer(index, s, x)
        return s

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """clips → pooled video features (B, d) (before the classifier)."""
        return self.head.features(self.forward_tokens(clips))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_tokens(clips))

    # ------------------------------------------------------------------ saving
    def saveable_config(self) -> dict:
        """The config stored by ``save_pretrained``: the backbone's weights travel in model.safetensors,
        so ``pretrained`` becomes null and the activation it implied is written out (a null
        ``pretrained`` would otherwise pick the OpenAI-architecture default)."""
        from open_clip.transformer import QuickGELU

        values = self.config.to_dict()
        values["pretrained"] = None
        values["quick_gelu"] = isinstance(self.backbone.resblocks[0].mlp.gelu, QuickGELU)
        return values

    # ------------------------------------------------------------------ bookkeeping
    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        c = self.config
        return (f"backbone={c.backbone}, pretrained={c.pretrained}, side_dim={c.side_dim}, "
                f"num_classes={c.num_classes}, fused_ops={c.fused_ops}, grad_checkpoint={c.grad_checkpoint}, "
                f"memory_mode={c.memory_mode}")


def build_tdsclip(config: TDSCLIPConfig | dict) -> TDSCLIP:
    """The TDS-CLIP model for ``config`` (a :class:`TDSCLIPConfig` or a dict of its fields)."""
    from ..archs import build_checked

    return build_checked(config, TDSCLIPConfig, TDSCLIP, "build_tdsclip: expected a TDSCLIPConfig")
