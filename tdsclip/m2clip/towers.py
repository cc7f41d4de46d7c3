"""The frozen CLIP of M2-CLIP: open_clip's vision and text towers built together (``open_clip.model.CLIP``)
with their weights, every parameter frozen (``requires_grad=False``).

Weights come from ``config.pretrained`` exactly as for TDS-CLIP (tdsclip.model.backbone): an open_clip tag
(fetched through open_clip's cache / the Hugging Face hub) or a local checkpoint of the *whole* CLIP
(OpenAI TorchScript archive, open_clip / OpenAI state_dict, safetensors) — M2-CLIP needs the text tower,
``ln_post``/``proj`` and ``logit_scale`` too. ``None``: random weights (tests, the demo).
"""
from __future__ import annotations

import copy
import types

import torch
from torch import nn

from ..config import TINY_VISION_CFG
from ..model.backbone import DTYPES, _resolve_pretrained, default_quick_gelu, read_state_dict
from .config import TINY_EMBED_DIM, TINY_TEXT_CFG, M2CLIPConfig

# entries of OpenAI's TorchScript state_dict that are not weights
_NON_WEIGHTS = ("input_resolution", "context_length", "vocab_size")


def _clip_cfg(config: M2CLIPConfig) -> tuple[int, dict, dict]:
    """(embed_dim, vision_cfg at the configured image size, text_cfg) of the backbone's open_clip model."""
    if config.backbone == "tiny":
        vision_cfg = dict(TINY_VISION_CFG, image_size=config.resolved_image_size)
        return TINY_EMBED_DIM, vision_cfg, dict(TINY_TEXT_CFG)
    import open_clip

    model_cfg = open_clip.get_model_config(config.backbone)
    if model_cfg is None:
        raise ValueError(f"backbone {config.backbone!r} is not an open_clip model name")
    text_cfg = copy.deepcopy(model_cfg.get("text_cfg") or {})
    if text_cfg.get("hf_model_name"):
        raise ValueError(f"backbone {config.backbone!r} has a Hugging Face text tower; M2-CLIP needs open_clip's "
                         "own text transformer (e.g. ViT-B-16, ViT-L-14)")
    vision_cfg = dict(copy.deepcopy(model_cfg["vision_cfg"]), image_size=config.resolved_image_size)
    return int(model_cfg["embed_dim"]), vision_cfg, text_cfg


def build_clip(config: M2CLIPConfig) -> tuple[nn.Module, tuple, tuple]:
    """(frozen open_clip CLIP with its weights, pixel mean, pixel std)."""
    from open_clip.model import CLIP

    embed_dim, vision_cfg, text_cfg = _clip_cfg(config)
    checkpoint, mean, std, _ = _resolve_pretrained(config)
    # QuickGELU as TDS-CLIP's frozen tower decides it (the config's flag, the tag's, OpenAI architectures)
    clip = CLIP(embed_dim, vision_cfg, text_cfg, quick_gelu=default_quick_gelu(config))
    if int(clip.transformer.width) != embed_dim:
        raise ValueError(f"backbone {config.backbone!r}: text width {clip.transformer.width} != embedding width "
                         f"{embed_dim}; the CMLM cross-attention needs them equal")
    if checkpoint is not None:
        load_clip_weights(clip, checkpoint)
    clip.requires_grad_(False)
    return clip.to(DTYPES[config.backbone_dtype]), mean, std


def load_clip_weights(clip: nn.Module, path: str) -> None:
    """Loads a full CLIP checkpoint into ``clip`` (every weight must be present; the image position
    embedding is resized when the image size differs)."""
    from open_clip.model import resize_pos_embed

    sd = {k: v for k, v in read_state_dict(path).items() if k not in _NON_WEIGHTS}
    if not any(k.startswith("visual.") for k in sd) or "token_embedding.weight" not in sd:
        raise ValueError(f"{path}: M2-CLIP needs a whole CLIP checkpoint (visual.* and the text tower), "
                         "not a vision tower alone")
    resize_pos_embed(sd, types.SimpleNamespace(visual=clip.visual))
    result = clip.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path} does not match {type(clip).__name__}: missing {result.missing_keys[:8]}, "
                         f"unexpected {result.unexpected_keys[:8]}")


def tokenizer():
    """open_clip's BPE tokenizer (ships with the package: works offline)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def as_float(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """x in the dtype of ``module``'s parameters (adapters are float32 whatever the frozen tower's dtype)."""
    return x.to(next(module.parameters()).dtype)
