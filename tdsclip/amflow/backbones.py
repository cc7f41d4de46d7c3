"""The frozen image models of AM flow (docs/amflow.md §1), opened up block by block.

AM flow needs each block's queries and keys and puts adapters beside its attention and MLP, so a
block is run here from its parts rather than through its ``forward``. :class:`FrozenImageModel`
gives one interface over two libraries:

* DINOv2 ViT-B/14 through timm (``vit_base_patch14_dinov2``; ``dinov2_tiny`` is the same
  architecture at width 64, 3 blocks, for tests and the demo). ``pretrained: timm`` fetches
  ``timm/vit_base_patch14_dinov2.lvd142m`` from the Hugging Face hub (timm's own download; set
  ``HF_HOME`` for the cache); a local file may be timm's ``model.safetensors`` / ``pytorch_model.bin``
  or Meta's ``dinov2_vitb14_pretrain.pth`` (timm's ``checkpoint_filter_fn`` converts the keys and
  resizes the position embedding from 518 px to ``image_size``).
* CLIP ViT-B/16 (and tdsclip's ``tiny`` tower) through open_clip, built and loaded by
  :func:`tdsclip.model.backbone.build_backbone` (open_clip tags such as ``openai``, or a file).

Every parameter has ``requires_grad=False`` and the module stays in eval mode, but the blocks run
with autograd on: the adapters sit inside them, so gradients must flow back through the frozen
layers to the adapters of earlier blocks.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..model.backbone import normalise_images
from .config import BACKBONES, TINY_TIMM_KWARGS, AMFlowConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenImageModel(nn.Module):
    """Common interface: ``embed(images) -> tokens (M, L, C)`` and, per block, ``norm1``, ``qkv``
    (→ q, k, v ``(M, H, L, d)``), ``attn_out`` (merge heads, projection, layer scale), ``norm2`` and
    ``mlp_out`` (MLP and layer scale)."""

    width: int
    num_heads: int
    mean: tuple
    std: tuple

    def train(self, mode: bool = True) -> "FrozenImageModel":
        return super().train(False)  # frozen: always eval

    def freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def num_tokens(self, image_size: int) -> int:
        """L: patches plus class (and register) tokens at ``image_size``."""
        return (image_size // self.patch_size) ** 2 + self.num_prefix_tokens

    @torch.no_grad()
    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Frozen block ``i`` alone (no adapters, no grad): what the demo's order-blind baseline
        (tdsclip.engine.linear_probe) runs."""
        q, k, v = self.qkv(i, self.norm1(i, x))
        x = x + self.attn_out(i, F.scaled_dot_product_attention(q, k, v))
        return x + self.mlp_out(i, self.norm2(i, x))

    def split_heads(self, qkv: torch.Tensor):
        M, L, _ = qkv.shape
        q, k, v = qkv.view(M, L, 3, self.num_heads, self.width // self.num_heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    @staticmethod
    def merge_heads(o: torch.Tensor) -> torch.Tensor:
        M, H, L, d = o.shape
        return o.transpose(1, 2).reshape(M, L, H * d)


class TimmViT(FrozenImageModel):
    """A timm VisionTransformer (DINOv2): patch embedding, class (and register) tokens, position
    embedding, ``norm_pre``; blocks ``norm1 / attn.qkv / attn.proj / ls1 / norm2 / mlp / ls2``."""

    def __init__(self, vit: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.vit = vit
        self.blocks = vit.blocks
        self.width = int(vit.embed_dim)
        self.num_heads = int(vit.blocks[0].attn.num_heads)
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.mean, self.std = tuple(mean), tuple(std)
        for blk in self.blocks:
            attn = blk.attn
            for name in ("q_norm", "k_norm", "norm"):
                if not isinstance(getattr(attn, name, nn.Identity()), nn.Identity):
                    raise ValueError(f"timm block attention with {name} is not supported by AM flow")
        self.freeze()

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        x = normalise_images(images, self.mean, self.std, vit.patch_embed.proj.weight.dtype)
        x = vit._pos_embed(vit.patch_embed(x))
        return vit.norm_pre(vit.patch_drop(x))

    def norm1(self, i, x):
        return self.blocks[i].norm1(x)

    def qkv(self, i, h):
        return self.split_heads(self.blocks[i].attn.qkv(h))

    def attn_out(self, i, o):
        blk = self.blocks[i]
        return blk.ls1(blk.attn.proj(self.merge_heads(o)))

    def norm2(self, i, x):
        return self.blocks[i].norm2(x)

    def mlp_out(self, i, h):
        blk = self.blocks[i]
        return blk.ls2(blk.mlp(h))


class OpenClipViT(FrozenImageModel):
    """An open_clip VisionTransformer (CLIP): tdsclip's :class:`FrozenViT` embedding; blocks
    ``ln_1 / attn (nn.MultiheadAttention) / ls_1 / ln_2 / mlp / ls_2``."""

    def __init__(self, frozen_vit: nn.Module):
        super().__init__()
        self.vit = frozen_vit
        self.blocks = frozen_vit.resblocks
        self.width = int(frozen_vit.width)
        self.num_heads = int(self.blocks[0].attn.num_heads)
        self.patch_size, self.num_prefix_tokens = frozen_vit.patch_size, 1
        self.mean, self.std = frozen_vit.mean, frozen_vit.std
        for blk in self.blocks:
            if not isinstance(getattr(blk, "ln_attn", nn.Identity()), nn.Identity):
                raise ValueError("open_clip blocks with scale_attn (ln_attn) are not supported by AM flow")
        self.freeze()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit.embed(images)

    def norm1(self, i, x):
        return self.blocks[i].ln_1(x)

    def qkv(self, i, h):
        attn = self.blocks[i].attn
        return self.split_heads(F.linear(h, attn.in_proj_weight, attn.in_proj_bias))

    def attn_out(self, i, o):
        blk = self.blocks[i]
        return blk.ls_1(blk.attn.out_proj(self.merge_heads(o)))

    def norm2(self, i, x):
        return self.blocks[i].ln_2(x)

    def mlp_out(self, i, h):
        blk = self.blocks[i]
        return blk.ls_2(blk.mlp(h))


# ---------------------------------------------------------------------------------------------
# construction

def build_image_model(config: AMFlowConfig) -> FrozenImageModel:
    if config.library == "timm":
        return TimmViT(build_timm_vit(config))
    from ..config import TDSCLIPConfig
    from ..model.backbone import build_backbone

    clip_cfg = TDSCLIPConfig(backbone=config.backbone, pretrained=config.pretrained, quick_gelu=config.quick_gelu,
                             image_size=config.resolved_image_size, num_classes=config.num_classes)
    return OpenClipViT(build_backbone(clip_cfg))


def build_timm_vit(config: AMFlowConfig) -> nn.Module:
    import timm

    _lib, name, patch, _native, _width, _heads = BACKBONES[config.backbone]
    kwargs = dict(img_size=config.resolved_image_size, num_classes=0, dynamic_img_size=False)
    if config.backbone == "dinov2_tiny":
        kwargs.update(TINY_TIMM_KWARGS)
    pretrained = config.pretrained
    if pretrained == "timm":
        if config.backbone == "dinov2_tiny":
            raise ValueError("pretrained 'timm': the dinov2_tiny backbone has no published weights")
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # offline, no cache, hub error: say what to do
            raise RuntimeError(f"could not fetch {name} weights through timm ({exc}); check the network "
                               "(HF_HUB_OFFLINE unset) or pass a local file as pretrained=/path/to/checkpoint") from exc
    model = timm.create_model(name, pretrained=False, **kwargs)
    if pretrained is not None:
        if not os.path.isfile(pretrained):
            raise ValueError(f"pretrained {pretrained!r}: neither 'timm' nor an existing checkpoint file")
        from timm.models.vision_transformer import checkpoint_filter_fn

        from ..model.backbone import read_state_dict

        sd = checkpoint_filter_fn(read_state_dict(pretrained), model)
        result = model.load_state_dict(sd, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("head")]
        if missing or result.unexpected_keys:
            raise ValueError(f"{pretrained} does not match {name}: missing {missing[:8]}, "
                             f"unexpected {result.unexpected_keys[:8]}")
    return model
