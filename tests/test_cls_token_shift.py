"""tds_kernels.cls_token_shift on every backend against its reference (docs/model.md §4 op 4).

The op only moves values, so every backend must match the reference exactly (and the parity rule of
tests/parity.py holds trivially); outputs are NaN-poisoned at allocation (conftest), so a value the
kernel forgets to write (e.g. the zeros at the ends) fails.
"""
from __future__ import annotations

import pytest
import torch

import tds_kernels
from tds_kernels.ops.cls_token_shift import op as shift_op
from tds_kernels.ops.cls_token_shift.reference import cls_token_shift_reference as reference

from backends import op_backends
from parity import assert_checkpoint_matches_eager, assert_compile_matches_eager, assert_parity

HAS_CPU, HAS_CUDA, NEED_CPU, NEED_GPU, BACKENDS, FUSED = op_backends("cls_token_shift_forward")
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# (B, T, C): T in {1, 2, 3, 8, 16}, even and odd C (odd C: the second half is one wider), C = 1
# (no first half at all), vector-friendly and unfriendly widths, batch 1.
SHAPES = [(1, 1, 20), (2, 2, 64), (1, 3, 320), (3, 8, 512), (1, 16, 20), (2, 8, 7), (1, 3, 1), (2, 5, 33),
          (1, 8, 10), (2, 4, 768)]


def _run(x, backend, g):
    x = x.detach().requires_grad_()
    y = reference(x) if backend is None else tds_kernels.cls_token_shift(x, backend=backend)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference_exactly(backend, device, dtype):
    for shape in SHAPES:
        x = torch.randn(shape, device=device).to(dtype)
        g = torch.randn(shape, device=device).to(dtype)
        y, dx = _run(x, backend, g)
        y_ref, dx_ref = _run(x, None, g)
        assert y.dtype == dtype and y.shape == x.shape
        assert torch.equal(y, y_ref), f"{backend} {shape} {dtype}: forward differs"
        assert torch.equal(dx, dx_ref), f"{backend} {shape} {dtype}: backward differs"
        # the shared parity rule too (fp64 reference of the same values)
        y64, dx64 = _run(x.double(), None, g.double())
        assert_parity(y, y_ref, y64, "y")
        assert_parity(dx, dx_ref, dx64, "dx")


def test_definition():
    """The shift itself on a readable example: C = 4, fold = 2."""
    x = torch.arange(1.0, 13.0).reshape(1, 3, 4)  # frames [1..4], [5..8], [9..12]
    expected = torch.tensor([[[5.0, 6.0, 0.0, 0.0], [9.0, 10.0, 3.0, 4.0], [0.0, 0.0, 7.0, 8.0]]])
    assert torch.equal(reference(x), expected)
    for backend in ["reference", "triton"] + (["cpu"] if HAS_CPU else []):
        assert torch.equal(tds_kernels.cls_token_shift(x, backend=backend), expected), backend


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    views = {
        "transposed": torch.randn(2, 6, 5, device=device).transpose(1, 2),   # (B, T=5, C=6)
        "channel slice": torch.randn(2, 4, 30, device=device)[..., 3:24],   # C = 21, row stride 30
        "every other frame": torch.randn(2, 8, 16, device=device)[:, ::2],
        "expanded batch": torch.randn(1, 3, 16, device=device).expand(3, 3, 16),
    }
    for name, x in views.items():
        assert not x.is_contiguous()
        g = torch.randn(x.shape, device=device)
        y, dx = _run(x, backend, g)
        y_ref, dx_ref = _run(x, None, g)
        assert torch.equal(y, y_ref), name
        assert torch.equal(dx, dx_ref), name


@pytest.mark.parametrize("backend", FUSED)
def test_special_values_are_moved_bit_exactly(backend):
    x = torch.tensor([[[float("nan"), -0.0, float("inf"), 1e-40], [float("-inf"), 2.0, -0.0, 3.0]]])
    y = tds_kernels.cls_token_shift(x, backend=backend)
    expected = reference(x)
    assert torch.equal(y.view(torch.int32), expected.view(torch.int32))


@pytest.mark.parametrize("backend", FUSED)
def test_saves_nothing_and_double_backward(backend):
    """The shift is linear: autograd saves nothing, backward is its transpose, and so on twice."""
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = tds_kernels.cls_token_shift(x, backend=backend)
    assert saved == []
    g = torch.randn_like(y, requires_grad=True)
    (dx,) = torch.autograd.grad(y, x, g, create_graph=True)
    # adjoint identity <shift(x), g> == <x, shift^T(g)>
    torch.testing.assert_close((y * g).sum(), (x * dx).sum(), rtol=1e-12, atol=0)
    # double backward: d<dx, v>/dg = shift(v)
    v = torch.randn_like(x)
    (dg,) = torch.autograd.grad(dx, g, v)
    assert torch.equal(dg, reference(v))


@NEED_CPU
def test_gradcheck_cpu():
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: tds_kernels.cls_token_shift(t, backend="cpu"), (x,))
    torch.autograd.gradgradcheck(lambda t: tds_kernels.cls_token_shift(t, backend="cpu").square(), (x,))


@NEED_CPU
def test_opcheck_tds_ops():
    x = torch.randn(2, 3, 20, requires_grad=True)
    torch.library.opcheck(torch.ops.tds.cls_token_shift_forward.default, (x,))
    torch.library.opcheck(torch.ops.tds.cls_token_shift_backward.default, (torch.randn(2, 3, 20, requires_grad=True),))


def test_opcheck_triton_ops():
    x = torch.randn(2, 3, 20, requires_grad=True)
    torch.library.opcheck(shift_op.triton_forward, (x,))
    torch.library.opcheck(shift_op.triton_backward, (torch.randn(2, 3, 20, requires_grad=True),))


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=NEED_CPU), "triton", "reference"])
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()

    def f(x):
        return tds_kernels.cls_token_shift(x.sin(), backend=backend) * 3.0

    x, g = torch.randn(2, 4, 20), torch.randn(2, 4, 20)
    assert_compile_matches_eager(f, x, g)


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=NEED_CPU), "triton", "reference"])
def test_checkpoint(backend):
    def f(x):
        return tds_kernels.cls_token_shift(x.exp(), backend=backend)

    x, g = torch.randn(2, 4, 20), torch.randn(2, 4, 20)
    assert_checkpoint_matches_eager(f, x, g)


BAD_INPUTS = [
    (lambda: torch.randn(2, 20), ValueError, "3-D"),
    (lambda: torch.randn(1, 2, 3, 20), ValueError, "3-D"),
    (lambda: torch.ones(1, 2, 4, dtype=torch.int64), TypeError, "dtype"),
    (lambda: torch.ones(1, 2, 4, dtype=torch.bool), TypeError, "dtype"),
    (lambda: torch.randn(0, 2, 4), ValueError, "zero-size"),
    (lambda: torch.randn(1, 0, 4), ValueError, "zero-size"),
    (lambda: torch.randn(1, 2, 0), ValueError, "zero-size"),
    (lambda: [[1.0, 2.0]], TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=NEED_CPU), "triton"])
@pytest.mark.parametrize("make_x,exc,match", BAD_INPUTS)
def test_bad_input(backend, make_x, exc, match):
    with pytest.raises(exc, match=match):
        tds_kernels.cls_token_shift(make_x(), backend=backend)


@NEED_CPU
def test_extension_op_checks_its_arguments():
    with pytest.raises(RuntimeError, match="must be \\(B, T, C\\)"):
        torch.ops.tds.cls_token_shift_forward(torch.randn(2, 3))
