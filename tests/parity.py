"""Parity checks shared by the op tests (the mamba / flash-attention rule):

    |fused - ref64| <= factor * |plain - ref64| + atol      (max over elements)

where ref64 is the reference run in float64 and plain is the reference run in the test dtype.
So a fused kernel may be as inexact as plain PyTorch in that dtype, but not much worse.

The plain error is always defined: where plain PyTorch's own result is not finite although ref64 is
(torch 2.14's bf16 CPU Conv3d weight gradient sometimes comes out NaN: issue #13), that element counts
with the error of ref64 rounded to the dtype instead. A NaN in the *fused* result always fails.

With TDS_PARITY_LOG=<file> every check appends one JSON line (test, name, dtype, fused and plain
errors, max|ref|); scripts/parity_summary.py turns that into the per-op, per-backend error table.
"""
from __future__ import annotations

import json
import os

import torch

ATOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float64: 1e-10}


def max_err(a: torch.Tensor, ref64: torch.Tensor) -> float:
    assert a.shape == ref64.shape, f"shape {tuple(a.shape)} != reference {tuple(ref64.shape)}"
    d = (a.detach().double() - ref64.detach().double()).abs()
    if d.numel() == 0:
        return 0.0
    if torch.isnan(d).any():
        return float("nan")
    return d.max().item()


def plain_err(plain: torch.Tensor, ref64: torch.Tensor, dtype: torch.dtype) -> float:
    """max |plain - ref64|, where elements plain PyTorch got non-finite (but ref64 has finite) count with
    |ref64 rounded to dtype - ref64|: never NaN, whatever plain PyTorch returned."""
    assert plain.shape == ref64.shape, f"shape {tuple(plain.shape)} != reference {tuple(ref64.shape)}"
    if plain.numel() == 0:
        return 0.0
    p, r = plain.detach().double(), ref64.detach().double()
    d = (p - r).abs()
    broken = ~torch.isfinite(p) & torch.isfinite(r)
    if broken.any():
        rounding = (r.to(dtype).double() - r).abs()
        d = torch.where(broken, rounding, d)
    return d.max().item()


def assert_parity(fused: torch.Tensor, plain: torch.Tensor, ref64: torch.Tensor, name: str,
                  factor: float = 2.0, atol: float | None = None, dtype: torch.dtype | None = None) -> float:
    """Assert the rule above; returns the fused error so tests can report it."""
    dtype = dtype or plain.dtype
    atol = ATOL.get(dtype, 1e-5) if atol is None else atol
    ef, ep = max_err(fused, ref64), plain_err(plain, ref64, dtype)
    scale = ref64.detach().abs().max().item() if ref64.numel() else 0.0
    log = os.environ.get("TDS_PARITY_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], "name": name,
                                "dtype": str(dtype).replace("torch.", ""), "fused": ef, "plain": ep,
                                "scale": scale}) + "\n")
    assert ef == ef, f"{name}: fused result contains NaN (unwritten output or bad math)"
    assert ef <= factor * ep + atol * max(1.0, scale), (
        f"{name}: fused error {ef:.3e} > {factor} x plain {dtype} error {ep:.3e} + atol {atol:.1e}"
        f" (x max|ref| {scale:.3e})")
    return ef


def value_and_grad(f, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), d<f(x), g>/dx) on a fresh leaf copy of x: one call of f forward and backward, for comparing
    an op eager against torch.compile or checkpointing."""
    x = x.detach().requires_grad_()
    y = f(x)
    y.backward(g)
    return y.detach(), x.grad


def assert_compile_matches_eager(f, x: torch.Tensor, g: torch.Tensor) -> None:
    """torch.compile(f, fullgraph=True) gives f's output and input gradient (to float tolerance)."""
    y, dx = value_and_grad(f, x, g)
    y_c, dx_c = value_and_grad(torch.compile(f, fullgraph=True), x, g)
    torch.testing.assert_close(y_c, y)
    torch.testing.assert_close(dx_c, dx)


def assert_checkpoint_matches_eager(f, x: torch.Tensor, g: torch.Tensor) -> None:
    """Non-reentrant activation checkpointing of f gives exactly f's output and input gradient."""
    y, dx = value_and_grad(f, x, g)
    y_ck, dx_ck = value_and_grad(lambda t: torch.utils.checkpoint.checkpoint(f, t, use_reentrant=False), x, g)
    torch.testing.assert_close(y_ck, y, rtol=0, atol=0)
    torch.testing.assert_close(dx_ck, dx, rtol=0, atol=0)
