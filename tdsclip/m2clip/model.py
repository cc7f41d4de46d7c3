"""``M2CLIP``: the whole model (docs/m2clip.md) and ``build(config)`` (tdsclip.archs builder).

Training: ``model(clips, labels)`` runs the video encoder, the class-prompt text features and the CMLM
branch in one forward (one DDP forward sees every trainable parameter) and ``compute_loss`` returns the
weighted sum of the four heads' losses with the visual head's logits. Inference: ``model(clips)`` →
the visual classification head (the paper's supervised protocol); ``zero_shot_logits(clips, names)`` →
cosine similarity with the prompts of any class names.
"""
from __future__ import annotations

import copy
import random

import torch
import torch.nn.functional as F
from torch import nn

from ..model.network import check_clips
from .config import WINDOW_OFFSETS, M2CLIPConfig
from .text import MLMHead, TextEncoder
from .towers import as_float, build_clip
from .video import VideoEncoder

# cos-similarity scale of the cross-modal classification and zero-shot logits (the authors' code: 100,
# CLIP's trained logit scale); the contrastive head uses CLIP's own (frozen) logit_scale.exp().
SIMILARITY_SCALE = 100.0


def contrastive_kl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ActionCLIP's KL contrastive loss of one direction: the target of row i is uniform over the videos
    of the same class (softmax of 10 x the 0/1 same-label matrix), ``KL(target || softmax(logits))``
    summed over the B x B entries / B."""
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)
    target = F.softmax(same * 10, dim=1)
    return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="sum") / logits.shape[0]


class M2CLIP(nn.Module):
    """Clips ``(B, T, 5, 3, H, W)`` (pixel values in [0, 255]; the centre frame of each window is used)
    → visual-head logits ``(B, num_classes)``."""

    def __init__(self, config: M2CLIPConfig):
        super().__init__()
        self.config = copy.deepcopy(config)
        clip, mean, std = build_clip(config)
        backend = None if config.fused_ops else "reference"
        self.video = VideoEncoder(clip.visual, mean, std, config, backend)
        self.text = TextEncoder(clip, config.text_adapter_width, config.prompt)
        self.logit_scale = clip.logit_scale  # frozen
        width = self.video.backbone.width
        # VC head: the frozen ln_post on the frames' mean CLS token → dropout → Linear (the authors' adapter_fc)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(width, config.num_classes)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)
        self.mlm_head = MLMHead(self.text.token_embedding)
        self.class_names: list[str] | None = None
        self._mask_rng = random.Random(0)

    # ------------------------------------------------------------------ switches (TDS-CLIP's interface)
    @property
    def fused_ops(self) -> bool:
        return self.config.fused_ops

    def set_fused_ops(self, enabled: bool) -> "M2CLIP":
        self.config.fused_ops = bool(enabled)
        self.video.set_backend(None if enabled else "reference")
        return self

    @property
    def grad_checkpoint(self) -> bool:
        return self.video.grad_checkpoint

    def set_grad_checkpoint(self, enabled: bool) -> "M2CLIP":
        self.config.grad_checkpoint = self.video.grad_checkpoint = bool(enabled)
        return self

    def set_class_names(self, names: list[str]) -> None:
        names = [str(n) for n in names]
        if len(names) != self.config.num_classes:
            raise ValueError(f"M2CLIP: {len(names)} class names for num_classes={self.config.num_classes}")
        self.class_names = names

    # ------------------------------------------------------------------ forward
    def check_clips(self, clips: torch.Tensor) -> None:
        check_clips(clips, self.config.resolved_image_size, "M2CLIP")

    def frames_of(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T * segment_frames, 3, H, W) in time order: the centre frame of each 5-frame window, or
        ``segment_frames`` consecutive frames of it (config.segment_frames)."""
        offsets = sorted(WINDOW_OFFSETS[self.config.segment_frames])
        return clips[:, :, [2 + o for o in offsets]].flatten(1, 2)

    def encode_video(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-frame CLS tokens (B, T, C), per-frame embeddings (B, T, E), video embedding (B, E))."""
        self.check_clips(clips)
        cls, frames = self.video(self.frames_of(clips))
        return cls, frames, frames.mean(dim=1)

    def visual_logits(self, cls: torch.Tensor) -> torch.Tensor:
        h = as_float(self.video.ln_post(cls.mean(dim=1)), self.classifier)
        return self.classifier(self.head_dropout(h))

    def forward(self, clips: torch.Tensor, labels: torch.Tensor | None = None):
        cls, frames, video = self.encode_video(clips)
        logits = self.visual_logits(cls)
        if labels is None:
            return logits
        if self.class_names is None:
            raise RuntimeError("M2CLIP: call set_class_names(names) before training (the text heads need them)")
        text = self.text.class_features(self.class_names, clips.device)            # (C, E)
        out = {"logits": logits, "video": video, "text": text}
        if self.config.loss_mlm > 0:
            tokens, targets = self.text.masked_tokens(self.class_names, labels, self.config.mask_ratio,
                                                      self._mask_rng)
            out["mlm_logits"] = self.text.cmlm_logits(tokens, frames, self.mlm_head)
            out["mlm_targets"] = targets
        return out

    def compute_loss(self, output: dict, labels: torch.Tensor, criterion) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted sum of the four heads' losses (docs/m2clip.md §loss) and the visual logits."""
        cfg = self.config
        logits = output["logits"].float()
        v = F.normalize(output["video"].float(), dim=-1)
        t = F.normalize(output["text"].float(), dim=-1)
        loss = cfg.loss_vc * criterion(logits, labels)
        if cfg.loss_contrastive > 0:  # video ↔ the batch's label prompts, symmetric
            pair = self.logit_scale.exp().float() * v @ t[labels].t()
            loss = loss + cfg.loss_contrastive * 0.5 * (contrastive_kl(pair, labels) + contrastive_kl(pair.t(), labels))
        if cfg.loss_cmc > 0:          # 1-in-C classification of the cross-modal similarities
            loss = loss + cfg.loss_cmc * F.cross_entropy(SIMILARITY_SCALE * v @ t.t(), labels)
        if "mlm_logits" in output:
            mlm = output["mlm_logits"].float()
            loss = loss + cfg.loss_mlm * F.cross_entropy(mlm.flatten(0, 1), output["mlm_targets"].flatten(),
                                                         ignore_index=-100)
        return loss, output["logits"]

    @torch.no_grad()
    def zero_shot_logits(self, clips: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """(B, len(class_names)): 100 x cos(video embedding, prompt features) — from class names alone."""
        _, _, video = self.encode_video(clips)
        text = self.text.class_features([str(n) for n in class_names], clips.device)
        return SIMILARITY_SCALE * F.normalize(video.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t()

    supports_zero_shot = True

    def train(self, mode: bool = True) -> "M2CLIP":
        super().train(mode)
        self.video.train(mode)
        return self


def build(config: M2CLIPConfig | dict) -> M2CLIP:
    """The M2-CLIP model for ``config`` (an :class:`M2CLIPConfig` or a dict of its fields)."""
    from ..archs import build_checked

    return build_checked(config, M2CLIPConfig, M2CLIP, "m2clip.build: expected an M2CLIPConfig")
