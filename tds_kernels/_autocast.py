"""Autocast pass-through for every registered op of tds_kernels.

The fused ops take activations in fp16/bf16/fp32 with fp32 weights and accumulate in fp32 on their
own. Without an Autocast kernel the dispatcher falls through to the CPU/CUDA kernel with autocast
still active, and the ATen matmuls *inside* the C++ kernels then get re-cast to bf16/fp16 and fail
("expected scalar type Float but found BFloat16") or lose precision. The kernel registered here
runs the op unchanged (no input casts) with the Autocast key excluded, which is what a
hand-written C++ autocast wrapper does.
"""
from __future__ import annotations

import torch

_LIBS: list = []  # keep the Library objects alive: their registrations die with them


def _passthrough(op: torch._ops.OpOverload, key: torch._C.DispatchKey):
    def kernel(_keyset, *args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            return op(*args, **kwargs)
    return kernel


def register_autocast_passthrough(namespace: str) -> int:
    """Register the pass-through for every overload in ``torch.ops.<namespace>``; returns how many."""
    names = sorted({n.split("::", 1)[1].split(".")[0] for n in torch._C._dispatch_get_all_op_names()
                    if n.startswith(namespace + "::")})
    if not names:
        return 0
    ns = getattr(torch.ops, namespace)
    lib = torch.library.Library(namespace, "IMPL")
    count = 0
    for name in names:
        packet = getattr(ns, name)
        for overload in packet.overloads():
            op = getattr(packet, overload)
            for device in ("cpu", "cuda"):
                key_name = "Autocast" + torch._C._dispatch_key_for_device(device)
                if op.has_kernel_for_dispatch_key(getattr(torch._C.DispatchKey, key_name)):
                    continue
                qual = name if overload == "default" else f"{name}.{overload}"
                lib.impl(qual, _passthrough(op, getattr(torch._C.DispatchKey, key_name)), key_name, with_keyset=True)
                count += 1
    _LIBS.append(lib)
    return count
