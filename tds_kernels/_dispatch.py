"""Backend selection for the fused ops: explicit, observable, overridable.

Order of preference (docs/model.md §4, issue #3):
  * a CUDA tensor:  "cuda" (the compiled extension) → "triton" → "reference"
  * a CPU tensor:   "cpu" (the compiled C++ kernel) → "reference"
    (Triton runs CPU tensors only under TRITON_INTERPRET=1, and only when asked for.)

``backend=`` on a call, or the environment variable ``TDS_KERNELS_BACKEND``, forces one
backend; a forced backend that is unavailable raises an error that says how to get it.
An automatic choice that falls below the first preference warns once per (op, device).
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Callable

import torch

from . import _ext

BACKENDS = ("reference", "cpu", "cuda", "triton")
ENV_VAR = "TDS_KERNELS_BACKEND"
_PREFERENCE = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpu", "reference")}

# op name -> backend -> implementation (a Python callable with the op's public signature)
_IMPLS: dict[str, dict[str, Callable]] = {}
_WARNED: set[tuple[str, str, str]] = set()


def register(op: str, backend: str, fn: Callable) -> Callable:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    _IMPLS.setdefault(op, {})[backend] = fn
    return fn


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backend_available(op: str, backend: str, device_type: str) -> tuple[bool, str]:
    """(available, why not) for running ``op`` on ``backend`` with tensors on ``device_type``."""
    if backend not in _IMPLS.get(op, {}):
        return False, f"op {op!r} has no {backend!r} implementation"
    if backend == "reference":
        return True, ""
    if backend in ("cpu", "cuda"):
        if backend != device_type:
            return False, f"the {backend!r} backend runs {backend} tensors, got {device_type} tensors"
        if not _ext.has_extension():
            return False, f"the compiled extension tds_kernels._C is not built ({_ext.load_error()}); {_ext.INSTALL_HINT}"
        if backend == "cuda" and not _ext.built_with_cuda():
            return False, ("tds_kernels._C was built without CUDA kernels (no nvcc or torch without CUDA at build "
                           f"time); {_ext.INSTALL_HINT} on a machine with nvcc")
        return True, ""
    if backend == "triton":
        if not triton_available():
            return False, "triton is not installed (pip install triton)"
        if device_type == "cpu" and not triton_interpret():
            return False, "Triton runs CPU tensors only under TRITON_INTERPRET=1"
        if device_type not in ("cpu", "cuda"):
            return False, f"Triton does not run {device_type} tensors"
        return True, ""
    return False, f"unknown backend {backend!r}"


def requested_backend(backend: str | None) -> str | None:
    """The backend asked for by argument, else by TDS_KERNELS_BACKEND, else None (automatic)."""
    if backend is None:
        backend = os.environ.get(ENV_VAR) or None
        source = f"environment variable {ENV_VAR}"
    else:
        source = "argument backend="
    if backend is not None and backend not in BACKENDS and backend != "auto":
        raise ValueError(f"{source} is {backend!r}; expected one of {BACKENDS} or 'auto'")
    return None if backend == "auto" else backend


def resolve(op: str, backend: str | None, device: torch.device, warn: bool = True) -> str:
    """Pick the backend that will run ``op`` for tensors on ``device`` (warn once on a downgrade)."""
    device_type = device.type
    forced = requested_backend(backend)
    if forced is not None:
        ok, why = backend_available(op, forced, device_type)
        if not ok:
            raise RuntimeError(f"tds_kernels.{op}: backend {forced!r} was requested but is unavailable: {why}")
        return forced
    prefs = _PREFERENCE.get(device_type, ("reference",))
    reasons = []
    for choice in prefs:
        ok, why = backend_available(op, choice, device_type)
        if ok:
            if warn and choice != prefs[0]:
                _warn_once(op, device_type, choice, reasons)
            return choice
        reasons.append(f"{choice}: {why}")
    return "reference"


def _warn_once(op: str, device_type: str, choice: str, reasons: list[str]) -> None:
    key = (op, device_type, choice)
    if key in _WARNED or torch.compiler.is_compiling():
        return
    _WARNED.add(key)
    warnings.warn(
        f"tds_kernels.{op} on {device_type}: using the {choice!r} backend; better ones are unavailable "
        f"({'; '.join(reasons)})", RuntimeWarning, stacklevel=4)


def call(op: str, backend: str | None, device: torch.device, *args, **kwargs):
    return _IMPLS[op][resolve(op, backend, device)](*args, **kwargs)


def implementations() -> dict[str, tuple[str, ...]]:
    return {op: tuple(b for b in BACKENDS if b in impls) for op, impls in _IMPLS.items()}
