"""Reference definition of the TD-Adapter (docs/model.md §3, §4 op 2), written with the plain layers whose
parameters the fused module keeps (so state_dicts are interchangeable):

    b   = BN1(Conv1x1_{d→d/r}(u))                     # no bias
    m   = b - maxpool_t(b)                              # kernel k, stride 1, -inf padding
    y   = 0.5·m + 0.5·mean_c(m)        (mix)            # per token, mean over the d/r channels
    y   = BN2(Conv1x1_{d/r→d}(y))                      # no bias
    out = u + u·(sigmoid(y) - 0.5)     (gated)          # published form
    out = u + y                        (plain variant)  # the paper's plain form: no mix, no gate

u is tokens (B, T, N, d); the convs and BNs run on a 5-D view of it, which is what
BatchNorm3d / Conv3d see on the model's (B, d, T, h, w) layout (the (B, d, T, 1, N) view, see below).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def td_adapter_reference(u: torch.Tensor, down, bn1, up, bn2, kernel_size: int = 3, mix: bool = True,
                         gated: bool = True) -> torch.Tensor:
    # (B, d, T, 1, N), not (B, d, T, N, 1): torch 2.14's CPU BatchNorm3d backward returns wrong
    # gradients when grad_output has channels-last-like strides with a trailing size-1 dim, which the
    # (B, d, T, N, 1) view of a channels-last token tensor produces (tests/test_td_adapter_reference.py).
    x = u.permute(0, 3, 1, 2).unsqueeze(-2)
    b = bn1(down(x))
    k = kernel_size
    m = b - F.max_pool3d(b, (k, 1, 1), stride=1, padding=(k // 2, 0, 0))
    if mix:
        m = 0.5 * m + 0.5 * m.mean(dim=1, keepdim=True)
    y = bn2(up(m))
    out = x + x * (torch.sigmoid(y) - 0.5) if gated else x + y
    return out.squeeze(-2).permute(0, 2, 3, 1)


# ---- the functional form: the "reference" backend of tds_kernels.td_adapter ----------------------------

def td_adapter_functional_reference(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1,
                                    running_mean2, running_var2, training=True, eps=1e-5, kernel_size=3, mix=True, gated=True):
    """Plain PyTorch (F.linear, F.batch_norm, F.max_pool1d): the fallback of last resort. It computes
    in u's dtype (weights cast to it), like the layer reference, and returns the BN statistics."""
    B, T, N, d = u.shape
    h = w_down.shape[0]
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    x = u.reshape(B * T * N, d)
    b = F.linear(x, w_down.to(u.dtype))                                   # (M, h)
    b, mean1, var1 = _batch_norm(b, gamma1, beta1, running_mean1, running_var1, training, eps, acc)
    # max over frames: (B, T, N, h) -> (B*N*h, 1, T) for max_pool1d (first maximum wins, as max_pool3d)
    bt = b.reshape(B, T, N * h).transpose(1, 2).reshape(B * N * h, 1, T)
    pooled = F.max_pool1d(bt, kernel_size, stride=1, padding=kernel_size // 2)
    m = (bt - pooled).reshape(B, N * h, T).transpose(1, 2).reshape(B * T * N, h)
    if mix:
        m = 0.5 * m + 0.5 * m.mean(dim=1, keepdim=True)
    z = F.linear(m, w_up.to(u.dtype))                                     # (M, d)
    y, mean2, var2 = _batch_norm(z, gamma2, beta2, running_mean2, running_var2, training, eps, acc)
    out = x + x * (torch.sigmoid(y) - 0.5) if gated else x + y
    return out.reshape(B, T, N, d), mean1, var1, mean2, var2


def _batch_norm(x, gamma, beta, running_mean, running_var, training, eps, acc):
    if training:
        with torch.no_grad():
            var, mean = torch.var_mean(x.detach().to(acc), dim=0, correction=0)
    else:
        mean, var = running_mean.detach().to(acc).clone(), running_var.detach().to(acc).clone()
    # F.batch_norm normalises (and differentiates through the batch statistics) as nn.BatchNorm does
    y = F.batch_norm(x, None if training else running_mean.to(x.dtype), None if training else running_var.to(x.dtype),
                     gamma.to(x.dtype), beta.to(x.dtype), training=training, eps=eps)
    return y, mean, var
