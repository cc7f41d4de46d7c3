"""Torch executor of ``ClipPlan``s: the CPU-side augmentation of the PyAV path.

It reproduces the DALI graph of ``dali_pipeline`` operation by operation (same formulas, same
rounding: every op ends with a half-up round to uint8, as DALI's saturating cast does), so both
paths give the same pixels up to +-1 from floating-point order. The crop+resize is a separable
resampling whose filter (a triangle of radius max(scale, 1), i.e. bilinear with antialiasing
when shrinking) and border handling (clamp to the *frame*, not the crop) are DALI's resize with
an ROI.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .augment import (AFFINE, AUTOCONTRAST, BRIGHTNESS, COLOR, CONTRAST, EQUALIZE, FILL, IDENTITY, LUMA, POSTERIZE,
                      SHARPNESS, SOLARIZE, SOLARIZE_ADD, ClipPlan)

_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0  # PIL's ImageFilter.SMOOTH


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    # Round half up and saturate (DALI's cast): after the clamp every value is >= 0, where the
    # float->uint8 conversion's truncation is floor.
    return (x + 0.5).clamp_(0, 255).to(torch.uint8)


def resample_weights(length: int, r0: float, r1: float, out: int) -> tuple[int, torch.Tensor]:
    """(first source index, (out, band) float32 weights) resampling source range [r0, r1) to ``out`` samples.

    r0 > r1 mirrors. Output sample i is centred at r0 + (i + 0.5) * (r1 - r0) / out in continuous
    coordinates (pixel k covers [k, k+1)); taps beyond the frame are clamped to its edge pixels.
    """
    scale = (r1 - r0) / out
    support = max(abs(scale), 1.0)
    centre = r0 + (np.arange(out) + 0.5) * scale - 0.5
    lo = math.floor(centre.min() - support)
    hi = math.ceil(centre.max() + support)
    taps = np.arange(lo, hi + 1)
    w = np.clip(1.0 - np.abs(taps[None, :] - centre[:, None]) / support, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    idx = np.clip(taps, 0, length - 1)
    first, last = int(idx.min()), int(idx.max())
    band = np.zeros((out, last - first + 1))
    np.add.at(band.T, idx - first, w.T)  # fold clamped taps onto the edge pixels
    return first, torch.from_numpy(band.astype(np.float32))


def resize_roi(frames: torch.Tensor, roi, size: int) -> torch.Tensor:
    """uint8 (F, 3, H, W) -> float (F, 3, size, size): source region roi = (y0, x0, y1, x1) resampled."""
    y0, x0, y1, x1 = roi
    h, w = frames.shape[-2:]
    ys, wy = resample_weights(h, y0, y1, size)
    xs, wx = resample_weights(w, x0, x1, size)
    band = frames[..., ys: ys + wy.shape[1], xs: xs + wx.shape[1]].float()
    return torch.matmul(torch.matmul(wy, band), wx.T)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0:1] * LUMA[0] + x[:, 1:2] * LUMA[1] + x[:, 2:3] * LUMA[2]


def _affine(x: torch.Tensor, m) -> torch.Tensor:
    n, _, h, w = x.shape
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    u = m[0] * gx + m[1] * gy + m[2]
    v = m[3] * gx + m[4] * gy + m[5]
    grid = torch.stack([u / w * 2 - 1, v / h * 2 - 1], dim=-1).expand(n, h, w, 2)
    # Outside samples read FILL: warp (x - FILL) with zero padding, then add FILL back.
    out = F.grid_sample(x.float() - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _to_u8(out + FILL)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    # OpenCV's equalizeHist per frame and channel (DALI's equalize): lut[i] = rint((cdf[i] - h[i0]) * 255/(N - h[i0])).
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).long()
    ones = torch.ones_like(flat, dtype=torch.float64)
    hist = torch.zeros(n * c, 256, dtype=torch.float64).scatter_add_(1, flat, ones)
    i0 = (hist > 0).float().argmax(dim=1, keepdim=True)
    h0 = hist.gather(1, i0)
    total = float(h * w)
    scale = (255.0 / (total - h0).clamp(min=1)).float()
    lut = torch.round((hist.cumsum(1) - h0).float() * scale).clamp(0, 255)
    lut = torch.where(torch.arange(256)[None] <= i0, torch.zeros_like(lut), lut)
    const = h0 == total  # a flat channel stays as it is
    lut = torch.where(const, torch.arange(256, dtype=torch.float32)[None].expand_as(lut), lut)
    return lut.gather(1, flat).to(torch.uint8).reshape(n, c, h, w)


def apply_op(x: torch.Tensor, kind: int, param: float, matrix) -> torch.Tensor:
    """One op on uint8 (F, 3, S, S) frames; statistics are per frame (and per channel where PIL has them)."""
    if kind == IDENTITY:
        return x
    if kind == AFFINE:
        return _affine(x, matrix)
    if kind == POSTERIZE:
        return x & int(param)
    if kind == SOLARIZE:
        return torch.where(x.float() < param, x, 255 - x)
    if kind == SOLARIZE_ADD:
        return torch.where(x < 128, _to_u8(torch.clamp(x.float() + param, max=255.0)), x)
    if kind == EQUALIZE:
        return _equalize(x)
    xf = x.float()
    if kind == AUTOCONTRAST:
        lo = xf.amin(dim=(-2, -1), keepdim=True)
        hi = xf.amax(dim=(-2, -1), keepdim=True)
        spread = hi > lo
        scale = torch.where(spread, 255.0 / torch.where(spread, hi - lo, torch.ones_like(hi)), torch.ones_like(hi))
        return _to_u8((xf - lo * spread) * scale)
    if kind == BRIGHTNESS:
        return _to_u8(xf * param)
    if kind == CONTRAST:
        centre = _luma(xf).mean(dim=(-2, -1), keepdim=True)
        return _to_u8(centre + (xf - centre) * param)
    if kind == COLOR:
        grey = _luma(xf)
        return _to_u8(grey + (xf - grey) * param)
    if kind == SHARPNESS:
        n, c, h, w = x.shape
        padded = F.pad(xf.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
        smooth = _to_u8(F.conv2d(padded, _SMOOTH[None, None])).float().reshape(n, c, h, w)
        return _to_u8(smooth + (xf - smooth) * param)
    raise ValueError(f"unknown op kind {kind}")


def apply_plan(frames, plan: ClipPlan) -> torch.Tensor:
    """Apply one plan to all frames of a clip.

    frames: uint8 (F, H, W, 3) numpy array or tensor (decoder layout).
    Returns uint8 (F, 3, size, size).
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 3, 1, 2)
    y0, x0, y1, x1 = plan.roi
    if plan.flip:
        x0, x1 = x1, x0  # a reversed x range mirrors, as DALI's resize ROI does
    out = _to_u8(resize_roi(x, (y0, x0, y1, x1), plan.size))
    for op in plan.ops:
        out = apply_op(out, op.kind, op.param, op.matrix)
    return out.contiguous()
