"""Autocast pass-through for every op of tds_kernels (registered per op by tds_kernels/ops/_wiring.py).

The fused ops take activations in fp16/bf16/fp32 with fp32 weights and accumulate in fp32 on their
own. Without an Autocast kernel the dispatcher falls through to the CPU/CUDA kernel with autocast
still active, and the ATen matmuls *inside* the C++ kernels then get re-cast to bf16/fp16 and fail
("expected scalar type Float but found BFloat16") or lose precision. The kernel registered here
runs the op unchanged (no input casts) with the Autocast key excluded, which is what a
hand-written C++ autocast wrapper does.
"""
from __future__ import annotations

import torch

_LIBS: dict[str, torch.library.Library] = {}  # keep the Library objects alive: their registrations die with them


def _passthrough(op: torch._ops.OpOverload, key: torch._C.DispatchKey):
    def kernel(_keyset, *args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            return op(*args, **kwargs)
    return kernel


def register_passthrough(qualname: str) -> int:
    """Register the pass-through for every overload of ``namespace::name`` on CPU and CUDA; returns how many."""
    namespace, name = qualname.split("::", 1)
    packet = getattr(getattr(torch.ops, namespace), name)
    count = 0
    for overload in packet.overloads():
        op = getattr(packet, overload)
        for device in ("cpu", "cuda"):
            key_name = "Autocast" + torch._C._dispatch_key_for_device(device)
            key = getattr(torch._C.DispatchKey, key_name)
            if op.has_kernel_for_dispatch_key(key):
                continue
            if namespace not in _LIBS:
                _LIBS[namespace] = torch.library.Library(namespace, "IMPL")
            qual = name if overload == "default" else f"{name}.{overload}"
            _LIBS[namespace].impl(qual, _passthrough(op, key), key_name, with_keyset=True)
            count += 1
    return count
