"""Reference definition of the side block's MLP as one op (docs/model.md §3 side block step 3):

    xn  = BatchNorm(x)            per channel over all M tokens of x (M, d): batch statistics
                                  (biased variance) in training, the running ones in eval
    out = Linear2(GELU(Linear1(xn)))           exact GELU; Linear1: d → H, Linear2: H → O

This is ``mlp_fc2(gelu(mlp_fc1(mlp_norm(s))))`` of the side block on its tokens (B, T, N, d), where
``mlp_norm`` is a BatchNorm3d over the (B, d, T, h, w) view, i.e. a batch norm of the token rows.
The functional form returns the statistics it used instead of updating running buffers, like the
fused op; :func:`bn_mlp_modules` in ``interface.py`` does the module bookkeeping.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bn_mlp_reference(x: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor, running_mean: torch.Tensor,
                     running_var: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor,
                     b2: torch.Tensor | None, training: bool = True, eps: float = 1e-5):
    """Plain PyTorch: returns (out (..., O), mean (d,), var (d,)); see the module docstring."""
    d = x.shape[-1]
    rows = x.reshape(-1, d)
    acc = torch.float64 if w1.dtype == torch.float64 else torch.float32
    if training:
        with torch.no_grad():
            var, mean = torch.var_mean(rows.to(acc), dim=0, unbiased=False)
        xn = F.batch_norm(rows, None, None, bn_weight, bn_bias, True, 0.0, eps)
    else:
        mean, var = running_mean.to(acc).clone(), running_var.to(acc).clone()
        xn = F.batch_norm(rows, running_mean, running_var, bn_weight, bn_bias, False, 0.0, eps)
    h = F.linear(xn.to(w1.dtype), w1, b1)
    out = F.linear(F.gelu(h), w2, b2)
    return out.reshape(*x.shape[:-1], w2.shape[0]), mean, var
