"""The frozen CLIP text tower DiST's contrastive head compares videos with (paper §3.4).

``FrozenTextTower`` wraps open_clip's TextTransformer of the backbone's CLIP model (a small one for
the ``tiny`` backbone) and its tokenizer (bundled with open_clip: works offline). With
``pretrained`` set, its weights and CLIP's learned temperature come from the same checkpoint as the
vision tower (``tdsclip.model.backbone``); otherwise they are random (tests, the demo).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..model.backbone import DTYPES, _resolve_pretrained, read_state_dict

# The "tiny" backbone's text tower: 2 blocks of width 64 (random weights; tests and the demo).
TINY_TEXT_CFG = dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2)
TINY_EMBED_DIM = 64
_TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def text_cfg_for(backbone: str) -> tuple[dict, int, str, bool]:
    """(open_clip text_cfg, embed_dim, tokenizer model name, model-config QuickGELU flag)."""
    if backbone == "tiny":
        return dict(TINY_TEXT_CFG), TINY_EMBED_DIM, "ViT-B-16", False
    import open_clip

    model_cfg = open_clip.get_model_config(backbone)
    if model_cfg is None:
        raise ValueError(f"backbone {backbone!r} is not an open_clip model name")
    return (copy.deepcopy(model_cfg["text_cfg"]), int(model_cfg["embed_dim"]), backbone,
            bool(model_cfg.get("quick_gelu", False)))


class FrozenTextTower(nn.Module):
    """Class names → text embeddings ``(K, E)`` under ``no_grad``; parameters frozen, always eval."""

    def __init__(self, config):
        super().__init__()
        import open_clip
        from open_clip.model import _build_text_tower

        text_cfg, embed_dim, tokenizer_name, model_quick_gelu = text_cfg_for(config.backbone)
        checkpoint, _mean, _std, tag_quick_gelu = _resolve_pretrained(config)
        quick_gelu = config.quick_gelu if config.quick_gelu is not None else (model_quick_gelu or tag_quick_gelu)
        self.tower = _build_text_tower(embed_dim, text_cfg, quick_gelu=quick_gelu)
        self.tokenizer = open_clip.get_tokenizer(tokenizer_name)
        self.embed_dim = embed_dim
        self.logit_scale = 1.0 / 0.07  # CLIP's initial temperature; the checkpoint's learned one if given
        if checkpoint is not None:
            self.logit_scale = self._load(checkpoint)
        self.tower.to(DTYPES[config.backbone_dtype])
        self.requires_grad_(False)
        super().train(False)

    def _load(self, path: str) -> float:
        sd = read_state_dict(path)
        text = {k: v for k, v in sd.items() if k.startswith(_TEXT_PREFIXES)}
        result = self.tower.load_state_dict(text, strict=False)
        missing = [k for k in result.missing_keys if k != "attn_mask"]
        if missing:
            raise ValueError(f"{path} holds no complete CLIP text tower (missing {missing[:8]}); DiST's "
                             "contrastive head needs the full CLIP checkpoint, or use model.head=linear")
        scale = sd.get("logit_scale")
        return float(scale.float().exp()) if scale is not None else 1.0 / 0.07

    def train(self, mode: bool = True) -> "FrozenTextTower":
        return super().train(False)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.tower.parameters()).device
        tokens = self.tokenizer(list(prompts)).to(device)
        return self.tower(tokens).float()

