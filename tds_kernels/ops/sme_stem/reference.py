"""Reference definition of the SME-Adapter stems (docs/model.md §1, §3 "Stems", §4 op 3):

    x     = (frames/255 - mean_c) / std_c            CLIP normalisation, frames (B, T, 5, 3, H, W)
    rgb   = x[:, :, 2]                               centre frame → (B, 3, T, H, W)
    diff  = cat_k(x[:, :, k+1] - x[:, :, k])          k = 0..3 on channels → (B, 12, T, H, W), channel 3k+c
    s     = BN_rgb(Conv3d_rgb(rgb)) + α·BN_mot(Conv3d_mot(diff))
    out   = s as tokens (B, T, N, d), N = h·w in row-major order

Frames are pixel values in [0, 255], uint8 or float.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validate import CENTRE, MOT_CHANNELS, acc_dtype, out_dtype

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


# ---- the functional form: the "reference" backend of tds_kernels.sme_stem --------------------------------
# The definition above written with F.conv3d / F.batch_norm on explicit parameters, returning the batch
# statistics like the fused backends.

def sme_stem_functional_reference(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                                  running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot,
                                  pixel_mean, pixel_std, alpha: float = 0.5, padding=(1, 1, 1), training: bool = True,
                                  eps: float = 1e-5):
    """The forward schema's arguments and results (tds::sme_stem_forward): :func:`tds_kernels.sme_stem`'s
    five results, then the two bias-free pre-BN conv outputs the fused kernels keep for their backward
    (tokens-shaped; empty in eval)."""
    B, T, _, C, H, W = frames.shape
    P = w_rgb.shape[-1]
    dtype = out_dtype(frames.dtype, w_rgb.dtype)
    acc = acc_dtype(frames.dtype, w_rgb.dtype)
    x = normalise_frames(frames, pixel_mean, pixel_std, dtype)
    rgb = x[:, :, CENTRE].permute(0, 2, 1, 3, 4)
    diff = (x[:, :, 1:] - x[:, :, :-1]).reshape(B, T, MOT_CHANNELS, H, W).permute(0, 2, 1, 3, 4)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731  (identity for matching dtypes)
    stride, padding = (1, P, P), tuple(padding)
    z_rgb = F.conv3d(rgb, cast(w_rgb), cast(b_rgb), stride=stride, padding=padding)
    z_mot = F.conv3d(diff, cast(w_mot), cast(b_mot), stride=stride, padding=padding)
    dims = (0, 2, 3, 4)
    if training:
        with torch.no_grad():
            stats = (z_rgb.to(acc).mean(dims), z_rgb.to(acc).var(dims, unbiased=False),
                     z_mot.to(acc).mean(dims), z_mot.to(acc).var(dims, unbiased=False))
        y_rgb = F.batch_norm(z_rgb, None, None, gamma_rgb, beta_rgb, True, 0.0, eps)
        y_mot = F.batch_norm(z_mot, None, None, gamma_mot, beta_mot, True, 0.0, eps)
    else:
        stats = tuple(t.detach().to(acc).clone() for t in
                      (running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot))
        y_rgb = F.batch_norm(z_rgb, running_mean_rgb, running_var_rgb, gamma_rgb, beta_rgb, False, 0.0, eps)
        y_mot = F.batch_norm(z_mot, running_mean_mot, running_var_mot, gamma_mot, beta_mot, False, 0.0, eps)
    s = y_rgb + alpha * y_mot
    tokens = lambda t: t.flatten(3).permute(0, 2, 3, 1)  # noqa: E731  (B, d, T, h*w) -> (B, T, N, d)
    if training:  # the pre-BN conv outputs without the conv bias: what the kernels keep for backward
        with torch.no_grad():
            saved = tuple(tokens(z if b is None else z - cast(b).view(-1, 1, 1, 1)).contiguous()
                          for z, b in ((z_rgb, b_rgb), (z_mot, b_mot)))
    else:
        saved = tuple(torch.empty(0, dtype=dtype, device=frames.device) for _ in range(2))
    return (tokens(s),) + stats + saved
