"""``SMEStem``: the SME-Adapter stems as an nn.Module whose parameters and buffers are those of
the plain layers of docs/model.md §3 (``conv_rgb``: Conv3d 3→d, ``bn_rgb``, ``conv_mot``: Conv3d 12→d,
``bn_mot``; kernel (3, P, P), stride (1, P, P)), whatever backend runs it."""
from __future__ import annotations

import torch
from torch import nn

from ... import _dispatch
from ..._bn import update_running_stats, uses_batch_stats
from .reference import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, sme_stem_reference
from .validate import check

PADDINGS = {"published": (1, 1, 1), "aligned": (1, 0, 0)}


class SMEStem(nn.Module):
    """Frames ``(B, T, 5, 3, H, W)`` (uint8 or float pixel values in [0, 255]) → tokens ``(B, T, N, d)``.

    Args:
        dim: side width d.
        patch_size: P (16 for ViT-B/16, 14 for ViT-L/14).
        alpha: weight of the motion branch (0.5 published).
        padding: Conv3d padding, ``(1, 1, 1)`` (published) or ``(1, 0, 0)`` (aligned with CLIP's
            patch grid); the names ``"published"`` / ``"aligned"`` are accepted too.
        mean, std: CLIP normalisation in [0, 1] units.
        backend: ``None`` (automatic), ``"reference"``, ``"cpu"``, ``"cuda"`` or ``"triton"``.
    """

    def __init__(self, dim: int, patch_size: int, alpha: float = 0.5, padding=(1, 1, 1),
                 mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, eps: float = 1e-5, momentum: float | None = 0.1,
                 backend: str | None = None):
        super().__init__()
        if isinstance(padding, str):
            if padding not in PADDINGS:
                raise ValueError(f"SMEStem: padding must be one of {list(PADDINGS)} or a 3-tuple, got {padding!r}")
            padding = PADDINGS[padding]
        padding = tuple(int(p) for p in padding)
        if len(padding) != 3 or any(p < 0 for p in padding):
            raise ValueError(f"SMEStem: padding must be 3 non-negative ints, got {padding}")
        if dim <= 0 or patch_size <= 0:
            raise ValueError(f"SMEStem: dim and patch_size must be positive, got {dim}, {patch_size}")
        self.dim, self.patch_size, self.alpha, self.padding = dim, patch_size, float(alpha), padding
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.backend = backend
        P = patch_size
        self.conv_rgb = nn.Conv3d(3, dim, (3, P, P), stride=(1, P, P), padding=padding)
        self.bn_rgb = nn.BatchNorm3d(dim, eps=eps, momentum=momentum)
        self.conv_mot = nn.Conv3d(12, dim, (3, P, P), stride=(1, P, P), padding=padding)
        self.bn_mot = nn.BatchNorm3d(dim, eps=eps, momentum=momentum)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, patch_size={self.patch_size}, alpha={self.alpha}, padding={self.padding}, backend={self.backend!r}"

    def grid(self, height: int, width: int) -> tuple[int, int]:
        P, (_, ph, pw) = self.patch_size, self.padding
        return (height + 2 * ph - P) // P + 1, (width + 2 * pw - P) // P + 1

    def _flat_args(self) -> tuple:
        return (self.conv_rgb.weight, self.conv_rgb.bias, self.conv_mot.weight, self.conv_mot.bias,
                self.bn_rgb.weight, self.bn_rgb.bias, self.bn_mot.weight, self.bn_mot.bias,
                self.bn_rgb.running_mean, self.bn_rgb.running_var, self.bn_mot.running_mean, self.bn_mot.running_var)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8, or float pixel values no wider than the module's dtype (see validate.py)."""
        if not isinstance(frames, torch.Tensor) or frames.dim() != 6 or frames.shape[2] != 5 or frames.shape[3] != 3:
            raise ValueError(f"SMEStem: frames must be (B, T, 5, 3, H, W), got "
                             f"{tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}")
        training = uses_batch_stats(self.bn_rgb)
        args = self._flat_args()
        # the one validation of the op, whichever backend runs (the layer reference included)
        check(frames, *args, self.mean, self.std, self.alpha, self.padding, training, self.bn_rgb.eps)
        backend = _dispatch.resolve("sme_stem", self.backend, frames.device)
        if backend == "reference":
            return sme_stem_reference(frames, self.conv_rgb, self.bn_rgb, self.conv_mot, self.bn_mot,
                                      self.alpha, self.mean, self.std)
        from .interface import sme_stem  # the functional fused op

        out, mean_r, var_r, mean_m, var_m = sme_stem(
            frames, *args, pixel_mean=self.mean, pixel_std=self.std, alpha=self.alpha, padding=self.padding,
            training=training, eps=self.bn_rgb.eps, backend=backend)
        if training:
            count = out.numel() // self.dim
            update_running_stats(self.bn_rgb, mean_r, var_r, count)
            update_running_stats(self.bn_mot, mean_m, var_m, count)
        return out
