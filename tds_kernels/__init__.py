"""tds_kernels: fused ops for TDS-CLIP (SPEC §4).

Public ops (each in ``tds_kernels/ops/<op>/``, defined by its ``reference.py``):
  * :func:`temporal_max_diff` — ``x - maxpool_t(x)`` (+ optional channel-mean mix), x (B, T, N, C)
  * :func:`cls_token_shift`   — half/half temporal shift of the CLS token, x (B, T, C)
  * :class:`TDAdapter` / :func:`td_adapter` — the TD-Adapter path on tokens (B, T, N, d)
  * :class:`SMEStem` / :func:`sme_stem` — the SME-Adapter stems, frames (B, T, 5, 3, H, W) → tokens (B, T, N, d)
  * :func:`bn_mlp` / :func:`bn_mlp_modules` — the side block's BatchNorm → Linear → GELU → Linear,
    keeping only its input for backward (the extra op of issue #5)

Backends: "reference", "cpu" (C++), "cuda", "triton"; see :mod:`tds_kernels._dispatch` and
``python -m tds_kernels.info``.
"""
from . import _ext  # noqa: F401  (loads the compiled extension, if built)
from ._dispatch import BACKENDS, ENV_VAR, backend_available, implementations, resolve
from .ops.bn_mlp import bn_mlp, bn_mlp_modules
from .ops.cls_token_shift import cls_token_shift
from .ops.sme_stem import SMEStem, sme_stem
from .ops.td_adapter import TDAdapter, td_adapter
from .ops.temporal_max_diff import temporal_max_diff
from ._autocast import register_autocast_passthrough as _register_autocast

# after every op module has defined its ops: run them with autocast excluded (see _autocast.py)
for _ns in ("tds", "tds_triton"):
    _register_autocast(_ns)

from .version import __version__  # noqa: E402  (the one version number: see version.py)

__all__ = [
    "BACKENDS", "ENV_VAR", "backend_available", "implementations", "resolve",
    "temporal_max_diff", "cls_token_shift", "td_adapter", "TDAdapter", "sme_stem", "SMEStem",
    "bn_mlp", "bn_mlp_modules",
]
