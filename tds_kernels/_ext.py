"""Loads the compiled extension ``tds_kernels._C`` if it was built.

Importing ``_C`` runs the C++ static initialisers that define the ``tds::`` op schemas
(``csrc/registration.cpp``) and register the CPU (and, in a CUDA build, CUDA) kernels
with the dispatcher.  When the extension is missing (a pure-Python install, or a build
that failed) every op still works through its Triton and reference backends.
"""
from __future__ import annotations

import torch

_LOAD_ERROR: str | None = None
_C = None
try:  # pragma: no cover - which branch runs depends on the install
    from . import _C  # noqa: F401
except ImportError as exc:  # the extension was not built
    _LOAD_ERROR = f"{type(exc).__name__}: {exc}"
    _C = None

INSTALL_HINT = (
    "build the C++/CUDA extension with `pip install --no-build-isolation -e .` "
    "from the repository root (see README.md, 'Building for a GPU')"
)


def has_extension() -> bool:
    return _C is not None


def load_error() -> str | None:
    return _LOAD_ERROR


def built_with_cuda() -> bool:
    """True when ``_C`` was compiled with the CUDA kernels (``TDS_WITH_CUDA``)."""
    return _C is not None and bool(getattr(_C, "WITH_CUDA", 0))


def build_flags() -> dict:
    """Compile-time facts recorded in ``_C`` (see ``csrc/module.cpp``)."""
    if _C is None:
        return {}
    return {
        "with_cuda": bool(getattr(_C, "WITH_CUDA", 0)),
        "cuda_arch_list": getattr(_C, "CUDA_ARCH_LIST", ""),
        "torch_version": getattr(_C, "TORCH_VERSION", ""),
        "openmp": bool(getattr(_C, "WITH_OPENMP", 0)),
    }


def has_kernel(op: str, device_type: str) -> bool:
    """True when the dispatcher holds a ``tds::<op>`` kernel for ``device_type``."""
    if _C is None:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"tds::{op}", key)
