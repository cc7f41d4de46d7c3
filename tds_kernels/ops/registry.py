"""The op registry: the one list of tds_kernels' fused ops.

Everything that concerns "every op" iterates :data:`OPS` instead of keeping its own list: the package's
exports (``tds_kernels/__init__.py``), ``python -m tds_kernels.info``, the backend-selection, bad-input
and Triton compile tests, the benchmarks (bench/harness.py, bench/make_results.py) and the README op
table check (tests/test_dispatch.py). Adding an op is one :class:`OpSpec` line here plus its folder
``tds_kernels/ops/<name>/`` and its C++ kernels; see docs/adding-an-op.md.

Every op folder holds the same files with the same roles:

    reference.py   the functional definition in plain PyTorch (the "reference" backend); module ops also
                   keep their layer form there (the nn layers whose state_dict the fused module keeps)
    validate.py    ``check(...)``: the one argument validation, called by the public function (and
                   the module) before any backend runs, so every backend accepts and rejects the same inputs
    op.py          torch.library wiring through :mod:`tds_kernels.ops._wiring`: fake kernels, autograd and
                   the Triton custom ops ``tds_triton::<name>_forward`` / ``_backward``
    triton.py      the Triton kernels, their launchers and ``TRITON_COMPILE_SPECS``
    interface.py   the public function (and ``module.py`` the nn.Module, for ops that have one)
    __init__.py    re-exports the names listed in the op's ``exports``

The compiled kernels are ``tds::<name>_forward`` / ``tds::<name>_backward`` (schemas in
csrc/registration.cpp, kernels in csrc/cpu/<name>.cpp and csrc/cuda/<name>.cpp).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class OpSpec:
    name: str                   # folder tds_kernels/ops/<name>, dispatch key, schema prefix
    title: str                  # one line for reports (info, bench results, README table)
    exports: tuple[str, ...]    # public names re-exported by ``tds_kernels``
    module: str | None = None   # the nn.Module among the exports, if the op has one

    @property
    def forward_schema(self) -> str:
        return f"{self.name}_forward"

    @property
    def backward_schema(self) -> str:
        return f"{self.name}_backward"

    @property
    def package(self) -> str:
        return f"tds_kernels.ops.{self.name}"

    def load(self) -> ModuleType:
        """Import the op's package (registers its backends, fake kernels and autograd)."""
        return importlib.import_module(self.package)

    def submodule(self, role: str) -> ModuleType:
        """One of the op's files by role: "reference", "validate", "op", "triton", "interface"."""
        return importlib.import_module(f"{self.package}.{role}")


OPS: tuple[OpSpec, ...] = (
    OpSpec("temporal_max_diff", "Temporal max-difference (B, T, N, d/r), k = 3, with mix",
           ("temporal_max_diff",)),
    OpSpec("cls_token_shift", "CLS token shift (B, T, d)", ("cls_token_shift",)),
    OpSpec("td_adapter", "TD-Adapter (gated, r = 16) on u (B, T, N, d), training mode",
           ("td_adapter", "TDAdapter"), module="TDAdapter"),
    OpSpec("sme_stem", "SME stem (RGB + motion Conv3d + BN) from uint8 frames (B, T, 5, 3, H, W)",
           ("sme_stem", "SMEStem"), module="SMEStem"),
    OpSpec("bn_mlp", "Side-block MLP: BN → Linear(d, 4d) → GELU → Linear(4d, d)",
           ("bn_mlp", "bn_mlp_modules", "side_mlp")),
    OpSpec("temporal_adjacent_diff", "Temporal adjacent difference x_t - x_{t-1} (B, T, N, c), M2-CLIP TED",
           ("temporal_adjacent_diff",)),
)

NAMES: tuple[str, ...] = tuple(op.name for op in OPS)
_BY_NAME = {op.name: op for op in OPS}


def get(name: str) -> OpSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"tds_kernels has no op {name!r}; registered: {', '.join(NAMES)}") from None
