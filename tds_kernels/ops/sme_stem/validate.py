"""Shapes, dtypes and the one argument check of the SME stem op (docs/adding-an-op.md), shared by every
backend, the fake (meta) kernels, the public function and the module. Mirrors ``check_inputs`` in
``csrc/common/sme_stem_host.h``.

Dtypes: frames are pixel values, uint8 or a float dtype no wider than the weights' (the stem computes in
the weights' dtype: float64 frames need a float64 stem); the tokens come out in the weights' dtype."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch

from .._checks import batch_norm_args

WINDOW = 5          # frames per local window; the centre one (index 2) is the RGB input
CENTRE = 2
COLOURS = 3
TAPS = 3            # temporal kernel of both Conv3d stems
MOT_CHANNELS = (WINDOW - 1) * COLOURS   # 12: channel 3k + c is f_{k+1} - f_k of colour c
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FRAME_DTYPES = (torch.uint8,) + FLOAT_DTYPES


class Geometry(NamedTuple):
    B: int
    T: int
    H: int
    W: int
    P: int
    d: int
    padding: tuple
    T_out: int
    h: int
    w: int


def out_dtype(frames_dtype: torch.dtype, weight_dtype: torch.dtype) -> torch.dtype:
    """dtype of the tokens: what the reference computes in (the conv's dtype)."""
    if frames_dtype.is_floating_point:
        return torch.promote_types(frames_dtype, weight_dtype)
    return weight_dtype


def acc_dtype(frames_dtype: torch.dtype, weight_dtype: torch.dtype) -> torch.dtype:
    """dtype of the accumulation and of the returned statistics: float64 for a float64 op, else float32."""
    return torch.float64 if out_dtype(frames_dtype, weight_dtype) == torch.float64 else torch.float32


def geometry(frames: torch.Tensor, w_rgb: torch.Tensor, padding: Sequence[int]) -> Geometry:
    """Shapes only (works on fake / symbolic shapes, no checks)."""
    B, T, _, _, H, W = frames.shape
    d, P = w_rgb.shape[0], w_rgb.shape[-1]
    pt, ph, pw = (int(p) for p in padding)
    return Geometry(B, T, H, W, P, d, (pt, ph, pw), T + 2 * pt - TAPS + 1, (H + 2 * ph - P) // P + 1,
                    (W + 2 * pw - P) // P + 1)


def _vec(name: str, t, d: int, device: torch.device, allow_none: bool = False) -> None:
    if t is None:
        if allow_none:
            return
        raise ValueError(f"sme_stem: {name} is required")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"sme_stem: {name} must be a tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"sme_stem: {name} must be float16/bfloat16/float32/float64, got {t.dtype}")
    if t.dim() != 1 or t.shape[0] != d:
        raise ValueError(f"sme_stem: {name} must have shape ({d},), got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"sme_stem: {name} is on {t.device} but frames are on {device}")


def check(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                 running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot,
                 pixel_mean, pixel_std, alpha, padding, training: bool, eps) -> Geometry:
    """Raise ValueError / TypeError naming the argument for anything the op cannot run."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"sme_stem: frames must be a tensor, got {type(frames).__name__}")
    if frames.dim() != 6:
        raise ValueError(f"sme_stem: frames must be (B, T, 5, 3, H, W), got rank {frames.dim()} "
                         f"shape {tuple(frames.shape)}")
    if frames.shape[2] != WINDOW:
        raise ValueError(f"sme_stem: frames dim 2 is the window of {WINDOW} frames, got {frames.shape[2]}")
    if frames.shape[3] != COLOURS:
        raise ValueError(f"sme_stem: frames dim 3 must be the 3 colour channels, got {frames.shape[3]}")
    if frames.dtype not in FRAME_DTYPES:
        raise TypeError(f"sme_stem: frames must be uint8 or float16/bfloat16/float32/float64, got {frames.dtype}")
    if any(s == 0 for s in frames.shape):
        raise ValueError(f"sme_stem: frames has a zero-size dimension (shape {tuple(frames.shape)})")
    if frames.requires_grad:
        raise ValueError("sme_stem: frames require grad, but the stem gives frames no gradient (they are data); "
                         "pass frames.detach()")
    for name, w in (("w_rgb", w_rgb), ("w_mot", w_mot)):
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"sme_stem: {name} must be a tensor, got {type(w).__name__}")
    if (w_rgb.dim() != 5 or w_rgb.shape[1] != COLOURS or w_rgb.shape[2] != TAPS or w_rgb.shape[3] != w_rgb.shape[4]
            or w_rgb.shape[0] == 0 or w_rgb.shape[3] == 0):
        raise ValueError(f"sme_stem: w_rgb must be a Conv3d weight (d, 3, 3, P, P), got {tuple(w_rgb.shape)}")
    d, P = w_rgb.shape[0], w_rgb.shape[3]
    if tuple(w_mot.shape) != (d, MOT_CHANNELS, TAPS, P, P):
        raise ValueError(f"sme_stem: w_mot must be ({d}, 12, 3, {P}, {P}) to match w_rgb, got {tuple(w_mot.shape)}")
    if w_rgb.dtype not in FLOAT_DTYPES:
        raise TypeError(f"sme_stem: w_rgb must be float16/bfloat16/float32/float64, got {w_rgb.dtype}")
    if w_mot.dtype != w_rgb.dtype:
        raise TypeError(f"sme_stem: w_mot dtype {w_mot.dtype} differs from w_rgb dtype {w_rgb.dtype}")
    if frames.dtype.is_floating_point and torch.promote_types(frames.dtype, w_rgb.dtype) != w_rgb.dtype:
        raise TypeError(f"sme_stem: frames have dtype {frames.dtype}, wider than the weights' {w_rgb.dtype}; the stem "
                        f"computes in the weights' dtype: pass uint8 frames or frames of dtype {w_rgb.dtype} or "
                        "narrower (or convert the stem with .to(dtype))")
    dev = frames.device
    for name, w in (("w_rgb", w_rgb), ("w_mot", w_mot)):
        if w.device != dev:
            raise ValueError(f"sme_stem: {name} is on {w.device} but frames are on {dev}")
    _vec("b_rgb", b_rgb, d, dev, allow_none=True)
    _vec("b_mot", b_mot, d, dev, allow_none=True)
    for name, t in (("gamma_rgb", gamma_rgb), ("beta_rgb", beta_rgb), ("gamma_mot", gamma_mot),
                    ("beta_mot", beta_mot)):
        _vec(name, t, d, dev)
    for name, t in (("running_mean_rgb", running_mean_rgb), ("running_var_rgb", running_var_rgb),
                    ("running_mean_mot", running_mean_mot), ("running_var_mot", running_var_mot)):
        # a training call does not read the running statistics: None / empty are fine there
        if training and (t is None or (isinstance(t, torch.Tensor) and t.numel() == 0)):
            continue
        _vec(name, t, d, dev)
    pixel_mean, pixel_std = list(pixel_mean), list(pixel_std)
    if len(pixel_mean) != COLOURS or len(pixel_std) != COLOURS:
        raise ValueError(f"sme_stem: pixel_mean and pixel_std must have 3 values, got {pixel_mean}, {pixel_std}")
    if not all(math.isfinite(m) for m in pixel_mean) or not all(math.isfinite(s) and s > 0 for s in pixel_std):
        raise ValueError(f"sme_stem: pixel_std must be positive and pixel_mean finite, got {pixel_mean}, {pixel_std}")
    padding = tuple(padding)
    if len(padding) != 3 or any((not isinstance(p, int)) or p < 0 for p in padding):
        raise ValueError(f"sme_stem: padding must be 3 non-negative ints (pt, ph, pw), got {padding}")
    if not math.isfinite(alpha):
        raise ValueError(f"sme_stem: alpha must be finite, got {alpha}")
    g = geometry(frames, w_rgb, padding)
    if g.T + 2 * padding[0] < TAPS:
        raise ValueError(f"sme_stem: T + 2*pt = {g.T + 2 * padding[0]} is shorter than the temporal kernel 3 "
                         f"(frames T = {g.T}, padding {padding})")
    if g.H + 2 * padding[1] < P or g.W + 2 * padding[2] < P:
        raise ValueError(f"sme_stem: frames {g.H}x{g.W} (padding {padding}) are smaller than one {P}x{P} patch")
    batch_norm_args("sme_stem", training=training, eps=eps, count=g.B * g.T_out * g.h * g.w,
                    running={"running_mean_rgb": running_mean_rgb, "running_var_rgb": running_var_rgb,
                             "running_mean_mot": running_mean_mot, "running_var_mot": running_var_mot})
    return g


def saved_conv_outputs(z_rgb: torch.Tensor, z_mot: torch.Tensor, shape: tuple) -> bool:
    """Whether a backward got the training forward's pre-BN conv outputs (tokens-shaped) rather than the
    empty tensors of an eval forward (then it recomputes them). Mirrors ``has_saved_conv_outputs`` in
    csrc/common/sme_stem_host.h."""
    saved = z_rgb.numel() > 0
    if saved != (z_mot.numel() > 0):
        raise ValueError(f"sme_stem_backward: z_rgb and z_mot must both be the forward's conv outputs or both be "
                         f"empty, got shapes {tuple(z_rgb.shape)} and {tuple(z_mot.shape)}")
    for name, z in (("z_rgb", z_rgb), ("z_mot", z_mot)):
        if saved and tuple(z.shape) != tuple(shape):
            raise ValueError(f"sme_stem_backward: {name} must be {tuple(shape)}, got {tuple(z.shape)}")
    return saved


def fill_optional(t: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Running statistics that a training call does not read may be None: the schemas want tensors."""
    return like.new_empty(0) if t is None else t


def example(training: bool = True, tiny: bool = False) -> dict:
    """A small valid call of the public function, by argument name (the tests that walk every op of the
    registry use it: tests/test_dispatch.py, tests/test_op_validation.py); tiny: one output position (one
    value per BatchNorm channel)."""
    d, P = 8, 4
    shape = (1, 1, 5, 3, P, P) if tiny else (2, 3, 5, 3, 9, 10)
    vec = lambda lo: torch.rand(d) + lo  # noqa: E731
    return {"frames": torch.randint(0, 256, shape, dtype=torch.uint8), "w_rgb": torch.randn(d, 3, 3, P, P) / 10,
            "b_rgb": torch.randn(d) / 10, "w_mot": torch.randn(d, 12, 3, P, P) / 10, "b_mot": torch.randn(d) / 10,
            "gamma_rgb": vec(0.5), "beta_rgb": vec(-0.5), "gamma_mot": vec(0.5), "beta_mot": vec(-0.5),
            "running_mean_rgb": vec(-0.5), "running_var_rgb": vec(0.5), "running_mean_mot": vec(-0.5),
            "running_var_mot": vec(0.5), "pixel_mean": (0.48, 0.46, 0.41), "pixel_std": (0.27, 0.26, 0.28),
            "alpha": 0.5, "padding": (1, 0, 0), "training": training, "eps": 1e-5}
