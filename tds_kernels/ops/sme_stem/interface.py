"""Public functional API of the fused SME stem (docs/model.md §4 op 3) and its backend registrations."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ... import _dispatch
from .._wiring import register_backends
from . import op  # noqa: F401  (registers fake kernels, autograd and the Triton ops)
from .reference import sme_stem_functional_reference
from .validate import check, fill_optional

OP = "sme_stem"
# Every backend takes the forward schema's arguments positionally (pixel_mean/std and padding as lists).
register_backends(OP, reference=sme_stem_functional_reference)


def sme_stem(frames: torch.Tensor, w_rgb: torch.Tensor, b_rgb: Optional[torch.Tensor], w_mot: torch.Tensor,
             b_mot: Optional[torch.Tensor], gamma_rgb: torch.Tensor, beta_rgb: torch.Tensor,
             gamma_mot: torch.Tensor, beta_mot: torch.Tensor, running_mean_rgb: Optional[torch.Tensor],
             running_var_rgb: Optional[torch.Tensor], running_mean_mot: Optional[torch.Tensor],
             running_var_mot: Optional[torch.Tensor], *, pixel_mean: Sequence[float], pixel_std: Sequence[float],
             alpha: float = 0.5, padding: Sequence[int] = (1, 1, 1), training: bool, eps: float = 1e-5,
             backend: Optional[str] = None):
    """The SME-Adapter stems, fused: ``BN_rgb(Conv3d_rgb(rgb)) + alpha * BN_mot(Conv3d_mot(diff))``.

    Args:
        frames: ``(B, T, 5, 3, H, W)`` pixel values in [0, 255]: uint8, or a float dtype no wider than the
            weights' (float16/bfloat16/float32 frames on a float32 stem; float64 frames need float64 weights);
            any strides. Dim 2 is the local window of 5 frames (centre = index 2), dim 3 RGB.
            Frames get no gradient (a float ``frames`` that requires grad is an error).
        w_rgb, b_rgb: Conv3d(3 -> d) weight ``(d, 3, 3, P, P)`` and optional bias ``(d,)``.
        w_mot, b_mot: Conv3d(12 -> d) weight ``(d, 12, 3, P, P)`` (channel ``3k + c`` is the difference
            ``f_{k+1} - f_k`` of colour c of the normalised frames) and optional bias. Same dtype as w_rgb.
        gamma_*, beta_*: the BatchNorm3d affine parameters ``(d,)``.
        running_mean_*, running_var_*: BatchNorm running statistics ``(d,)``; read only when
            ``training=False`` (may be None in training).
        pixel_mean, pixel_std: CLIP normalisation in [0, 1] units: ``x = (f/255 - mean_c) / std_c``.
        alpha: weight of the motion branch.
        padding: Conv3d padding ``(pt, ph, pw)``: ``(1, 1, 1)`` (published) or ``(1, 0, 0)``; the
            stride is ``(1, P, P)`` and a spatial remainder that does not fill a patch is dropped.
        training: batch statistics (True) or the running ones (False) in both BatchNorms.
        backend: None (automatic), "reference", "cpu", "cuda" or "triton".

    Returns:
        ``(tokens, mean_rgb, var_rgb, mean_mot, var_mot)``: tokens ``(B, T_out, N, d)`` with
        ``T_out = T + 2 pt - 2`` (= T for the usual pt = 1) and ``N = h * w`` in row-major order,
        the weights' dtype; then the per-channel
        statistics in float32 (float64 for a float64 op): in training the batch mean and biased variance
        of each conv output (bias included), in eval copies of the running statistics. Only tokens is
        differentiable (grads flow to weights, biases and the BatchNorm affine parameters).
    """
    check(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, running_mean_rgb,
          running_var_rgb, running_mean_mot, running_var_mot, pixel_mean, pixel_std, alpha, padding, training, eps)
    running = [fill_optional(t, gamma_rgb) for t in
               (running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot)]
    results = _dispatch.call(OP, backend, frames.device, frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb,
                             gamma_mot, beta_mot, *running, [float(m) for m in pixel_mean],
                             [float(v) for v in pixel_std], float(alpha), [int(p) for p in padding],
                             bool(training), float(eps))
    return results[:5]  # the schema's last two results are the conv outputs kept for backward
