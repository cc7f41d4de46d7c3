"""The "reference" backend of the functional op: the definition in reference.py (normalise, centre
frame, 12-channel difference stack, two Conv3d + BatchNorm3d, fusion) written with F.conv3d /
F.batch_norm on explicit parameters, returning the batch statistics like the fused backends."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import CENTRE, MOT_CHANNELS, acc_dtype, out_dtype
from .reference import normalise_frames


def sme_stem_functional_reference(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                                  running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot, *,
                                  pixel_mean, pixel_std, alpha: float = 0.5, padding=(1, 1, 1), training: bool,
                                  eps: float = 1e-5):
    """Same signature and results as :func:`tds_kernels.sme_stem` (without ``backend``)."""
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
    return (s.flatten(3).permute(0, 2, 3, 1),) + stats  # (B, d, T, h*w) -> (B, T, N, d)
