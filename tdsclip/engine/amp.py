"""Mixed precision: ``--amp bf16|fp16|off``.

bf16 needs no loss scaling; fp16 uses a GradScaler (its state goes into checkpoints). On CPU,
autocast runs bf16 and fp16 too (slowly on CPUs without native support), which keeps the same
code path testable without a GPU.
"""
from __future__ import annotations

import contextlib

import torch

AMP_MODES = ("bf16", "fp16", "off")


def amp_dtype(mode: str) -> torch.dtype | None:
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {mode!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]


def autocast(mode: str, device: torch.device):
    dtype = amp_dtype(mode)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (a disabled one is a pass-through with the same API)."""
    return torch.amp.GradScaler(device.type, enabled=(amp_dtype(mode) == torch.float16))
