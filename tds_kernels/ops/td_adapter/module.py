"""``TDAdapter``: the TD-Adapter as an nn.Module whose parameters and buffers are those of the
plain layers (``down``: Conv3d d→d/r 1×1×1 no bias, ``bn1``: BatchNorm3d(d/r), ``up``: Conv3d
d/r→d 1×1×1 no bias, ``bn2``: BatchNorm3d(d)), whatever backend runs it."""
from __future__ import annotations

import torch
from torch import nn

from ... import _dispatch
from ..._bn import update_running_stats, uses_batch_stats
from .._checks import module_input_dtype
from .reference import td_adapter_reference
from .validate import check

VARIANTS = ("gated", "plain")


class TDAdapter(nn.Module):
    """Temporal Difference Adapter on tokens ``(B, T, N, d)`` → ``(B, T, N, d)``.

    Args:
        dim: channel width d.
        reduction: r; the narrow width is ``dim // reduction`` (20 for d = 320, r = 16).
        kernel_size: temporal max-pool window k (odd: 3, 5, 7).
        variant: ``"gated"`` (published: channel-mean mix and sigmoid gate) or ``"plain"``
            (the paper's form: no mix, no gate, ``out = u + Up(m)``).
        backend: ``None`` (automatic), ``"reference"``, ``"cpu"``, ``"cuda"`` or ``"triton"``.
    """

    def __init__(self, dim: int, reduction: int = 16, kernel_size: int = 3, variant: str = "gated",
                 eps: float = 1e-5, momentum: float | None = 0.1, backend: str | None = None):
        super().__init__()
        if dim <= 0 or reduction <= 0 or dim % reduction != 0:
            raise ValueError(f"TDAdapter: dim ({dim}) must be a positive multiple of reduction ({reduction})")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"TDAdapter: kernel_size must be a positive odd integer, got {kernel_size}")
        if variant not in VARIANTS:
            raise ValueError(f"TDAdapter: variant must be one of {VARIANTS}, got {variant!r}")
        hidden = dim // reduction
        self.dim, self.hidden, self.kernel_size, self.variant = dim, hidden, kernel_size, variant
        self.backend = backend
        self.down = nn.Conv3d(dim, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(hidden, eps=eps, momentum=momentum)
        self.up = nn.Conv3d(hidden, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(dim, eps=eps, momentum=momentum)

    @property
    def mix(self) -> bool:
        return self.variant == "gated"

    @property
    def gated(self) -> bool:
        return self.variant == "gated"

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, kernel_size={self.kernel_size}, variant={self.variant!r}, backend={self.backend!r}"

    def _flat_args(self) -> tuple:
        return (self.down.weight.view(self.hidden, self.dim), self.up.weight.view(self.dim, self.hidden),
                self.bn1.weight, self.bn1.bias, self.bn2.weight, self.bn2.bias,
                self.bn1.running_mean, self.bn1.running_var, self.bn2.running_mean, self.bn2.running_var)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, T, N, d) in the module's dtype, or float16/bfloat16 on a float32 module (computed in float32,
        returned in u's dtype), or the autocast dtype under autocast; anything else is a TypeError on
        every backend."""
        if not isinstance(u, torch.Tensor) or u.dim() != 4 or u.shape[-1] != self.dim:
            raise ValueError(f"TDAdapter: u must be (B, T, N, {self.dim}), got "
                             f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
        module_input_dtype("TDAdapter", "u", u, self.down.weight.dtype, allow_16bit_on_fp32=True)
        training = uses_batch_stats(self.bn1)
        args = self._flat_args()
        # the one validation of the op, whichever backend runs (the layer reference included)
        check(u, *args, training, self.bn1.eps, self.kernel_size)
        backend = _dispatch.resolve("td_adapter", self.backend, u.device)
        if backend == "reference":
            x = u
            if u.dtype != self.down.weight.dtype and not torch.is_autocast_enabled(u.device.type):
                x = u.to(self.down.weight.dtype)  # 16-bit u on a float32 module: float32 math, as the kernels
            out = td_adapter_reference(x, self.down, self.bn1, self.up, self.bn2, self.kernel_size,
                                       mix=self.mix, gated=self.gated)
            return out.to(u.dtype)
        from .interface import td_adapter  # the functional fused op

        out, mean1, var1, mean2, var2 = td_adapter(
            u, *args, training=training, eps=self.bn1.eps, kernel_size=self.kernel_size, mix=self.mix,
            gated=self.gated, backend=backend)
        if training:
            count = u.numel() // self.dim
            update_running_stats(self.bn1, mean1, var1, count)
            update_running_stats(self.bn2, mean2, var2, count)
        return out
