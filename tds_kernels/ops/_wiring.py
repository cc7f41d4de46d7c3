"""The one helper every op's ``op.py`` and ``interface.py`` use to wire an op into torch.library and the
backend dispatcher (tds_kernels._dispatch), so the five ops do it the same way.

* :func:`wire_library` registers, for one namespace (``tds``: the compiled kernels, schemas in
  csrc/registration.cpp; ``tds_triton``: the Triton custom ops defined in op.py), the fake kernels of
  ``<name>_forward`` / ``<name>_backward``, the autograd formula of the forward op, the backward op's own
  gradient (double backward, or a clear NotImplementedError) and the autocast pass-through
  (tds_kernels/_autocast.py). For ``tds`` it does nothing when the extension is not built.
* :func:`register_backends` registers the four backends of an op with the dispatcher: "reference" (the
  functional definition), "cpu" and "cuda" (both ``torch.ops.tds.<name>_forward``; the dispatcher picks
  the kernel from the tensors' device) and "triton" (``torch.ops.tds_triton.<name>_forward``). Every
  backend takes the forward schema's arguments, positionally, in the schema's order.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .. import _autocast, _dispatch, _ext


class OpPair(NamedTuple):
    """The forward and backward ops of one namespace (what an autograd formula calls)."""
    forward: Callable
    backward: Callable


def ops_of(namespace: str, name: str) -> OpPair:
    ns = getattr(torch.ops, namespace)
    return OpPair(getattr(ns, f"{name}_forward"), getattr(ns, f"{name}_backward"))


def _setup_nothing(ctx, inputs, output):
    pass


def _no_double_backward(name: str):
    def backward(ctx, *grads):
        raise NotImplementedError(f"tds_kernels.{name}: double backward is not implemented")
    return backward


def has_schema(namespace: str, name: str) -> bool:
    if namespace == "tds" and not _ext.has_extension():
        return False
    return f"{namespace}::{name}_forward" in torch._C._dispatch_get_all_op_names()


def wire_library(namespace: str, name: str, *, fake_forward: Callable, fake_backward: Callable,
                 setup_context: Callable, make_backward: Callable[[OpPair], Callable],
                 make_double_backward: Callable[[OpPair], Callable] | None = None,
                 setup_double_backward: Callable = _setup_nothing) -> bool:
    """Register fakes, autograd and autocast of ``<namespace>::<name>_forward/_backward``.

    make_backward(ops) returns the forward op's backward ``fn(ctx, *grad_outputs)``;
    make_double_backward(ops), if given, the backward op's, with ``setup_double_backward`` as its
    setup_context (default: saves nothing; an op whose backward is not linear in its inputs alone saves them).
    Returns False when the namespace does not define the op (``tds`` without the extension)."""
    if not has_schema(namespace, name):
        return False
    ops = ops_of(namespace, name)
    fwd, bwd = f"{namespace}::{name}_forward", f"{namespace}::{name}_backward"
    torch.library.register_fake(fwd)(fake_forward)
    torch.library.register_fake(bwd)(fake_backward)
    torch.library.register_autograd(fwd, make_backward(ops), setup_context=setup_context)
    double = make_double_backward(ops) if make_double_backward else _no_double_backward(name)
    torch.library.register_autograd(bwd, double, setup_context=setup_double_backward)
    for qual in (fwd, bwd):
        _autocast.register_passthrough(qual)
    return True


def register_backends(name: str, *, reference: Callable) -> None:
    """The four backends of op ``name``; all take the forward schema's arguments positionally."""
    def extension(*args):
        return getattr(torch.ops.tds, f"{name}_forward")(*args)

    def triton(*args):
        return getattr(torch.ops.tds_triton, f"{name}_forward")(*args)

    for backend, fn in (("reference", reference), ("cpu", extension), ("cuda", extension), ("triton", triton)):
        _dispatch.register(name, backend, fn)
