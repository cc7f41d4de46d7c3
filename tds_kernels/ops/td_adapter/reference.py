"""Reference definition of the TD-Adapter (SPEC §3), written with the plain layers whose
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
