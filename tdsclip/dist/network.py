"""``DiST``: the whole model (paper §3, docs/dist.md) and ``build_model(config)``."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..model.backbone import FrozenViT, build_backbone, normalise_images
from ..model.layers import checkpoint_side_block
from ..model.network import check_clips
from .config import DiSTConfig
from .frames import frame_differences, split_frames
from .head import DiSTHead, cosine_logits
from .integration import IntegrationFFN, IntegrationToTemporal, TemporalToIntegration
from .temporal import TBlock, TemporalStem
from .text import FrozenTextTower


class DiSTLayer(nn.Module):
    """One layer l of the temporal encoder + integration branch, beside frozen block l."""

    def __init__(self, width: int, temporal_dim: int, dim: int, config: DiSTConfig, last: bool = False):
        super().__init__()
        frames, gamma = config.sparse_frames, config.gamma
        self.t_block = TBlock(temporal_dim, config.temporal_kernel, config.temporal_mlp_ratio)
        self.input = nn.Linear(width, dim)                                    # FC(X_l): C → αC
        # Φ of the last layer would feed no T-Block (the authors' code computes and drops it): not
        # built, so every parameter gets a gradient (DistributedDataParallel needs no unused-parameter search)
        self.to_temporal = None if last else IntegrationToTemporal(dim, temporal_dim, gamma, config.grid)   # Φ
        self.to_integration = TemporalToIntegration(temporal_dim, dim, gamma, frames)   # Ψ
        self.ffn = IntegrationFFN(dim, config.integration_mlp_ratio, config.integration_temporal_mlp_ratio,
                                  config.temporal_kernel)
        self.residual_every = config.integration_residual == "every"

    def forward(self, z: torch.Tensor, y_prev: torch.Tensor | float, x: torch.Tensor):
        """z: Z^{l-1} + Ẑ^{l-1} (B, βC, γT, h, w); y_prev: Y^{l-1} (B, T, N+1, αC) or 0; x: X_l
        (B, T, N+1, C) → (Z^l + Ẑ^l, Y^l, Ŷ^l)."""
        z = self.t_block(z)                                   # Z^l  (Eq. 3)
        mixed = y_prev + self.input(x.to(self.input.weight.dtype))   # Y^{l-1} + FC(X^l)
        y_hat = mixed + self.to_integration(z)                # Ŷ^l  (Eq. 4, first line): Ψ(Z^l)
        if self.to_temporal is not None:
            z = z + self.to_temporal(mixed)                   # Z^l + Ẑ^l: the next T-Block's input (Eq. 6)
        y = self.ffn(y_hat)                                   # Eq. 4, second line
        if self.residual_every:
            y = y + y_hat
        return z, y, y_hat


class DiST(nn.Module):
    """DiST: clips ``(B, S, 5, 3, H, W)`` → logits ``(B, num_classes)``.

    * frames: ``config.dense_sampling`` picks T sparse and γT dense frames (:mod:`.frames`); S must
      be ``config.num_frames`` (the position embeddings and class tokens are per sparse frame).
    * ``backbone`` (:class:`FrozenViT`): frozen, ``no_grad``, on the sparse frames; every block's
      output feeds the layer of the same index.
    * ``stem`` + ``layers``: the temporal encoder and integration branch; ``head``: adaptive
      pooling and projection; ``text`` (text head only): the frozen text tower.
    * logits: text head: ``logit_scale · cos(y_cls, u_k)`` with ``u_k`` the text embeddings of the
      class prompts (buffer ``class_text``, set by :meth:`set_class_names`); the contrastive loss of
      Eq. 7 is the trainer's cross-entropy on these logits. Linear head: ``Linear(y_cls)``.
    """

    def __init__(self, config: DiSTConfig):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.backbone: FrozenViT = build_backbone(config)
        width = self.backbone.width
        temporal_dim, dim = config.widths(width)
        self.stem = TemporalStem(temporal_dim, config.patch_size, config.stem_kernel_t)
        num_layers = self.backbone.num_layers
        self.layers = nn.ModuleList(DiSTLayer(width, temporal_dim, dim, config, last=i == num_layers - 1)
                                    for i in range(num_layers))
        self.text = FrozenTextTower(config) if config.head == "text" else None
        out_dim = self.text.embed_dim if self.text is not None else None
        self.head = DiSTHead(dim, width, config.sparse_frames, config.pooling_layers, out_dim, config.head_dropout)
        if self.text is not None:
            self.logit_scale = float(config.logit_scale or self.text.logit_scale)
            self.register_buffer("class_text", torch.zeros(config.num_classes, out_dim))
            self.register_buffer("class_text_ready", torch.zeros((), dtype=torch.bool))
            self.classifier = None
        else:
            self.classifier = nn.Linear(dim, config.num_classes)
        self._init_weights()

    def _init_weights(self):
        # the authors' init of every new conv / linear: truncated normal (std 0.02), zero bias
        for m in [self.stem, self.layers, self.head, self.classifier]:
            for mod in (m.modules() if m is not None else []):
                if isinstance(mod, (nn.Conv1d, nn.Conv3d, nn.Linear)):
                    nn.init.trunc_normal_(mod.weight, std=0.02)
                    if mod.bias is not None:
                        nn.init.zeros_(mod.bias)
        if self.config.head_init == "fan_in":
            # std 0.02 gives each layer a gain of 0.02·√fan_in: ~0.4 at the paper's αC = 384, 0.16 at a
            # demo width of 64, where the head's chain of such layers (attention outputs, MLPs, classifier)
            # starts too weak to pass the branch's signal or a gradient (docs/dist.md "Demo"); 1/√fan_in
            # gives every head layer gain ~1 at any width (the text projection is initialised so already)
            for m in [self.head, self.classifier]:
                for mod in (m.modules() if m is not None else []):
                    if isinstance(mod, nn.Linear):
                        nn.init.trunc_normal_(mod.weight, std=mod.in_features ** -0.5)

    # ------------------------------------------------------------------ switches
    @property
    def supports_zero_shot(self) -> bool:
        return self.text is not None

    @property
    def fused_ops(self) -> bool:
        return self.config.fused_ops

    def set_fused_ops(self, enabled: bool) -> "DiST":
        """Recorded only: no DiST op has a fused kernel (docs/dist.md "Fused ops"), both are plain PyTorch."""
        self.config.fused_ops = bool(enabled)
        return self

    @property
    def grad_checkpoint(self) -> bool:
        return self.config.grad_checkpoint

    def set_grad_checkpoint(self, enabled: bool) -> "DiST":
        self.config.grad_checkpoint = bool(enabled)
        return self

    def train(self, mode: bool = True) -> "DiST":
        super().train(mode)
        self.backbone.train(False)
        if self.text is not None:
            self.text.train(False)
        return self

    # ------------------------------------------------------------------ text
    def text_embeddings(self, class_names: list[str]) -> torch.Tensor:
        if self.text is None:
            raise RuntimeError("DiST: the linear head (model.head=linear) has no text tower; zero-shot "
                               "classification needs model.head=text")
        if not class_names or not all(isinstance(n, str) for n in class_names):
            raise ValueError(f"DiST: class_names must be a non-empty list of strings, got {class_names!r}")
        prompts = [self.config.prompt.format(n.replace("_", " ")) for n in class_names]
        return self.text(prompts)

    def set_class_names(self, names: list[str]) -> None:
        """Encodes the class prompts once; the embeddings are a buffer (kept in checkpoints)."""
        if self.text is None:
            return
        if len(names) != self.config.num_classes:
            raise ValueError(f"DiST: {len(names)} class names for num_classes={self.config.num_classes}")
        with torch.no_grad():
            self.class_text.copy_(self.text_embeddings(list(names)))
            self.class_text_ready.fill_(True)

    # ------------------------------------------------------------------ forward
    def check_clips(self, clips: torch.Tensor) -> None:
        check_clips(clips, self.config.resolved_image_size, "DiST")
        if clips.shape[1] != self.config.num_frames:
            raise ValueError(f"DiST: clips need S = num_frames = {self.config.num_frames} segments (the "
                             f"per-frame embeddings are sized for it), got shape {tuple(clips.shape)}")

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """clips → video features y_cls (B, E) (text head: before normalisation)."""
        self.check_clips(clips)
        sparse, dense = split_frames(clips, self.config.gamma, self.config.dense_sampling)
        B, T = sparse.shape[:2]
        H, W = sparse.shape[-2:]
        frames = normalise_images(dense.reshape(-1, 3, H, W), self.backbone.mean, self.backbone.std,
                                  self.stem.conv.weight.dtype)
        frames = frames.view(B, -1, 3, H, W)
        if self.config.stem_input == "differences":
            frames = frame_differences(frames)
        z = self.stem(frames.transpose(1, 2))                             # (B, βC, γT, h, w)
        x = self.backbone.embed(sparse.reshape(B * T, 3, H, W))          # no grad
        y: torch.Tensor | float = 0.0
        y_hat = None
        checkpointing = self.config.grad_checkpoint and torch.is_grad_enabled()
        for index, layer in enumerate(self.layers):
            x = self.backbone.block(index, x)
            xl = x.view(B, T, *x.shape[1:])
            if checkpointing:
                z, y, y_hat = checkpoint_side_block(layer, layer, z, y, xl)
            else:
                z, y, y_hat = layer(z, y, xl)
        final = y if self.config.integration_residual == "every" else y + y_hat
        return self.head(final, x[:, 0].view(B, T, -1).to(final.dtype))

    def logits_from_features(self, features: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if self.text is None:
            return self.classifier(features)
        if text is None:
            if not self.class_text_ready.is_meta and not bool(self.class_text_ready):
                # never given names (direct use): the prompts of the class indices
                self.set_class_names([str(i) for i in range(self.config.num_classes)])
            text = self.class_text
        return cosine_logits(features, text, self.logit_scale)

    def forward(self, clips: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits_from_features(self.forward_features(clips))

    @torch.no_grad()
    def zero_shot_logits(self, clips: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """(B, len(class_names)): cosine/τ with the text embeddings of ``class_names`` (any names)."""
        return self.logits_from_features(self.forward_features(clips), self.text_embeddings(class_names))

    # ------------------------------------------------------------------ bookkeeping
    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        c = self.config
        return (f"backbone={c.backbone}, pretrained={c.pretrained}, T={c.sparse_frames}, gamma={c.gamma}, "
                f"dense_sampling={c.dense_sampling}, head={c.head}, num_classes={c.num_classes}")


def build_model(config: DiSTConfig | dict) -> DiST:
    """The DiST model for ``config`` (a :class:`DiSTConfig` or a dict of its fields)."""
    from ..archs import build_checked

    return build_checked(config, DiSTConfig, DiST, "build_model: expected a DiSTConfig")
