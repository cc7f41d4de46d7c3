"""Reference definition of the SME-Adapter stems (SPEC §1, §3 "Stems"):

    x     = (frames/255 - mean_c) / std_c            CLIP normalisation, frames (B, T, 5, 3, H, W)
    rgb   = x[:, :, 2]                               centre frame → (B, 3, T, H, W)
    diff  = cat_k(x[:, :, k+1] - x[:, :, k])          k = 0..3 on channels → (B, 12, T, H, W), channel 3k+c
    s     = BN_rgb(Conv3d_rgb(rgb)) + α·BN_mot(Conv3d_mot(diff))
    out   = s as tokens (B, T, N, d), N = h·w in row-major order

Frames are pixel values in [0, 255], uint8 or float.
"""
from __future__ import annotations

import torch

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalise_frames(frames: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = frames.to(dtype) / 255.0
    m = torch.as_tensor(mean, dtype=dtype, device=frames.device).view(1, 1, 1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=frames.device).view(1, 1, 1, 3, 1, 1)
    return (x - m) / s


def sme_stem_reference(frames: torch.Tensor, conv_rgb, bn_rgb, conv_mot, bn_mot, alpha: float = 0.5,
                       mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD) -> torch.Tensor:
    B, T, W, C, H, Wd = frames.shape
    dtype = conv_rgb.weight.dtype if not frames.is_floating_point() else (
        torch.promote_types(frames.dtype, conv_rgb.weight.dtype))
    x = normalise_frames(frames, mean, std, dtype)
    rgb = x[:, :, 2].permute(0, 2, 1, 3, 4)
    diff = (x[:, :, 1:] - x[:, :, :-1]).reshape(B, T, 4 * C, H, Wd).permute(0, 2, 1, 3, 4)
    s = bn_rgb(conv_rgb(rgb)) + alpha * bn_mot(conv_mot(diff))
    return s.flatten(3).permute(0, 2, 3, 1)  # (B, d, T, h·w) → (B, T, N, d)
