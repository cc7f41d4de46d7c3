"""tds_kernels: fused ops for TDS-CLIP (docs/model.md §4).

The ops are listed once, in :mod:`tds_kernels.ops.registry` (each in ``tds_kernels/ops/<op>/``, defined
by its ``reference.py``; see docs/adding-an-op.md):
  * :func:`temporal_max_diff` — ``x - maxpool_t(x)`` (+ optional channel-mean mix), x (B, T, N, C)
  * :func:`cls_token_shift`   — half/half temporal shift of the CLS token, x (B, T, C)
  * :class:`TDAdapter` / :func:`td_adapter` — the TD-Adapter path on tokens (B, T, N, d)
  * :class:`SMEStem` / :func:`sme_stem` — the SME-Adapter stems, frames (B, T, 5, 3, H, W) → tokens (B, T, N, d)
  * :func:`bn_mlp` / :func:`bn_mlp_modules` / :func:`side_mlp` — the side block's BatchNorm → Linear → GELU →
    Linear, keeping only its input for backward; ``side_mlp`` chooses among the plain, fused and lean paths

Also public: :mod:`tds_kernels.lean` (memory-lean autograd compositions), :func:`update_running_stats` /
:func:`uses_batch_stats` (BatchNorm bookkeeping of the functional ops), :data:`OPENAI_CLIP_MEAN` / ``_STD``.

Backends: "reference", "cpu" (C++), "cuda", "triton"; see :func:`resolve` and ``python -m tds_kernels.info``.
"""
from . import _ext  # noqa: F401  (loads the compiled extension, if built)
from ._bn import update_running_stats, uses_batch_stats
from ._dispatch import BACKENDS, ENV_VAR, backend_available, implementations, resolve
from ._ext import has_extension, load_error
from .lean import (lean_batchnorm_linear, lean_gelu_linear, lean_layernorm_linear, lean_side_connection,
                   lean_temporal_dwconv)
from .ops.registry import OPS
from .ops.sme_stem.reference import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .version import __version__  # noqa: E402  (the one version number: see version.py)

__all__ = [
    "BACKENDS", "ENV_VAR", "backend_available", "implementations", "resolve", "has_extension", "load_error",
    "update_running_stats", "uses_batch_stats", "lean_batchnorm_linear", "lean_gelu_linear",
    "lean_layernorm_linear", "lean_side_connection",
    "lean_temporal_dwconv", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "OPS",
]

# Every registered op: importing its package registers its backends, fake kernels, autograd and autocast
# pass-through; its public names become tds_kernels.<name>.
for _spec in OPS:
    _package = _spec.load()
    for _name in _spec.exports:
        globals()[_name] = getattr(_package, _name)
        __all__.append(_name)
del _spec, _package, _name
