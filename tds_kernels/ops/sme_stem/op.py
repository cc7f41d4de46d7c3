"""torch.library wiring of the fused SME stem (through tds_kernels/ops/_wiring.py).

* ``tds::sme_stem_forward`` / ``tds::sme_stem_backward``: schemas in csrc/registration.cpp, CPU and
  CUDA kernels in csrc/{cpu,cuda}/sme_stem*.  Here: their fake (meta) kernels and the autograd
  formula of the forward — only when the compiled extension is loaded (the schemas live there).
* ``tds_triton::sme_stem_forward`` / ``tds_triton::sme_stem_backward``: the Triton kernels of
  triton.py as custom ops with the same signatures, fakes and autograd.

Only the tokens output is differentiable; the four statistics are returned for the running-buffer
update. The autograd context keeps the frames (as given: uint8 is 4x smaller than float; the weight
gradients need them), the weights/biases/BN affine parameters, the per-channel statistics and the two
pre-BatchNorm conv outputs of a training forward (tokens-sized, in the tokens' dtype: what eager
autograd keeps for BatchNorm too). Keeping those costs 2 x B*T*N*d values (2 x 1.9 MiB per clip at
ViT-B/16, ~1 % of the side network's activation bytes) and saves the backward from recomputing the
convolutions (the forward's GEMMs again, which made it slower than eager's; bench/target_notes.md),
so it is done in both memory modes. An eval forward keeps none (it fuses straight into the tokens);
its backward recomputes them. Nothing of the frames' size in float is kept.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .._wiring import wire_library
from .validate import acc_dtype, geometry, out_dtype


def _fake_forward(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, running_mean_rgb,
                  running_var_rgb, running_mean_mot, running_var_mot, pixel_mean, pixel_std, alpha, padding,
                  training, eps):
    g = geometry(frames, w_rgb, padding)
    tokens = frames.new_empty((g.B, g.T_out, g.h * g.w, g.d), dtype=out_dtype(frames.dtype, w_rgb.dtype))
    acc = acc_dtype(frames.dtype, w_rgb.dtype)
    saved_shape = tokens.shape if training else (0,)
    return ((tokens,) + tuple(w_rgb.new_empty((g.d,), dtype=acc) for _ in range(4))
            + tuple(tokens.new_empty(saved_shape) for _ in range(2)))


def _fake_backward(grad_out, frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                   mean_rgb, var_rgb, mean_mot, var_mot, z_rgb, z_mot, pixel_mean, pixel_std, alpha, padding,
                   training, eps):
    def like(p):  # kernels return contiguous tensors in the parameter's dtype
        return p.new_empty(p.shape)

    def bias(b):  # an absent bias gets an empty gradient tensor
        return like(b) if b is not None else w_rgb.new_empty((0,), dtype=acc_dtype(frames.dtype, w_rgb.dtype))

    return (like(w_rgb), bias(b_rgb), like(w_mot), bias(b_mot), like(gamma_rgb), like(beta_rgb), like(gamma_mot),
            like(beta_mot))


_TENSOR_INPUTS = 13  # frames .. running_var_mot; then pixel_mean, pixel_std, alpha, padding, training, eps


def _setup_context(ctx, inputs, output):
    (frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot) = inputs[:9]
    _, mean_rgb, var_rgb, mean_mot, var_mot, z_rgb, z_mot = output
    ctx.save_for_backward(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                          mean_rgb, var_rgb, mean_mot, var_mot, z_rgb, z_mot)
    ctx.args = tuple(inputs[_TENSOR_INPUTS:])
    ctx.has_bias = (b_rgb is not None, b_mot is not None)
    ctx.mark_non_differentiable(mean_rgb, var_rgb, mean_mot, var_mot, z_rgb, z_mot)


def _make_backward(ops):
    def backward(ctx, grad_tokens, *_stat_grads):
        saved = ctx.saved_tensors
        n_inputs = _TENSOR_INPUTS + len(ctx.args)
        if grad_tokens is None:
            return (None,) * n_inputs
        gw_r, gb_r, gw_m, gb_m, gg_r, gbe_r, gg_m, gbe_m = ops.backward(grad_tokens, *saved, *ctx.args)
        grads = (None, gw_r, gb_r if ctx.has_bias[0] else None, gw_m, gb_m if ctx.has_bias[1] else None,
                 gg_r, gbe_r, gg_m, gbe_m)
        return grads + (None,) * (n_inputs - len(grads))

    return backward


# ---- Triton custom ops -----------------------------------------------------------------------------

@torch.library.custom_op("tds_triton::sme_stem_forward", mutates_args=())
def triton_forward(frames: Tensor, w_rgb: Tensor, b_rgb: Optional[Tensor], w_mot: Tensor,
                            b_mot: Optional[Tensor], gamma_rgb: Tensor, beta_rgb: Tensor, gamma_mot: Tensor,
                            beta_mot: Tensor, running_mean_rgb: Tensor, running_var_rgb: Tensor,
                            running_mean_mot: Tensor, running_var_mot: Tensor, pixel_mean: List[float],
                            pixel_std: List[float], alpha: float, padding: List[int], training: bool,
                            eps: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from . import triton as tri  # imports triton lazily: the op exists even where triton is missing

    return tri.forward(frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                       running_mean_rgb, running_var_rgb, running_mean_mot, running_var_mot, pixel_mean, pixel_std,
                       alpha, padding, training, eps)


@torch.library.custom_op("tds_triton::sme_stem_backward", mutates_args=())
def triton_backward(grad_out: Tensor, frames: Tensor, w_rgb: Tensor, b_rgb: Optional[Tensor],
                             w_mot: Tensor, b_mot: Optional[Tensor], gamma_rgb: Tensor, beta_rgb: Tensor,
                             gamma_mot: Tensor, beta_mot: Tensor, mean_rgb: Tensor, var_rgb: Tensor,
                             mean_mot: Tensor, var_mot: Tensor, z_rgb: Tensor, z_mot: Tensor,
                             pixel_mean: List[float], pixel_std: List[float], alpha: float, padding: List[int],
                             training: bool,
                             eps: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from . import triton as tri

    return tri.backward(grad_out, frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot,
                        mean_rgb, var_rgb, mean_mot, var_mot, z_rgb, z_mot, pixel_mean, pixel_std, alpha, padding,
                        training, eps)


for _namespace in ("tds", "tds_triton"):
    wire_library(_namespace, "sme_stem", fake_forward=_fake_forward, fake_backward=_fake_backward,
                 setup_context=_setup_context, make_backward=_make_backward)
