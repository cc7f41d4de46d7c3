"""Which backends an op test can run on this machine, as pytest parameters (shared by the op tests).

    HAS_CPU, HAS_CUDA, NEED_CPU, NEED_GPU, BACKENDS, FUSED = op_backends("cls_token_shift_forward")

BACKENDS: (backend, device) pairs — the C++ kernel, Triton under the interpreter on CPU tensors, and on
a GPU machine the CUDA kernel and Triton on CUDA tensors — each skipped where it cannot run.
FUSED: the fused backends that run on CPU tensors here ("cpu" when the extension is built, "triton").
"""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

from tds_kernels import _ext

NEED_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


class OpBackends(NamedTuple):
    has_cpu: bool
    has_cuda: bool
    need_cpu: pytest.MarkDecorator
    need_gpu: pytest.MarkDecorator
    backends: list
    fused: list


def op_backends(kernel: str) -> OpBackends:
    """kernel: a schema name of the op in tds_kernels._C (e.g. "temporal_max_diff_forward": tds_kernels.ops.registry.get(op).forward_schema)."""
    has_cpu = _ext.has_extension() and _ext.has_kernel(kernel, "cpu")
    has_cuda = torch.cuda.is_available() and _ext.built_with_cuda() and _ext.has_kernel(kernel, "cuda")
    need_cpu = pytest.mark.skipif(not has_cpu, reason="tds_kernels._C is not built (pip install --no-build-isolation -e .)")
    backends = [
        pytest.param("cpu", "cpu", marks=need_cpu, id="cpu"),
        pytest.param("triton", "cpu", id="triton-interp"),
        pytest.param("cuda", "cuda", marks=pytest.mark.skipif(not has_cuda, reason="no CUDA device / CUDA build"),
                     id="cuda"),
        pytest.param("triton", "cuda", marks=NEED_GPU, id="triton-cuda"),
    ]
    fused = [pytest.param("cpu", marks=need_cpu), "triton"]
    return OpBackends(has_cpu, has_cuda, need_cpu, NEED_GPU, backends, fused)
