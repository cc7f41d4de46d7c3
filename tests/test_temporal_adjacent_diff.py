"""tds_kernels.temporal_adjacent_diff on every backend against its reference.

One subtraction per element, computed in float32 (float64) and rounded once as PyTorch does, so the
compiled backends equal the reference bit for bit in every dtype (and the shared parity rule of
tests/parity.py holds); outputs are NaN-poisoned at allocation (conftest), so a zero the kernel forgets
to write at the clip's first (last) frame fails. Exception: the Triton *interpreter* casts float32 to
bfloat16 by truncation (compiled Triton rounds to nearest), so interpreted bf16 is held to the parity
rule only.
"""
from __future__ import annotations

import pytest
import torch

import tds_kernels
from tds_kernels.ops.temporal_adjacent_diff import op as diff_op
from tds_kernels.ops.temporal_adjacent_diff.reference import temporal_adjacent_diff_reference as reference

from backends import op_backends
from parity import assert_checkpoint_matches_eager, assert_compile_matches_eager, assert_parity

HAS_CPU, HAS_CUDA, NEED_CPU, NEED_GPU, BACKENDS, FUSED = op_backends("temporal_adjacent_diff_forward")
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
MODES = [(False, "backward"), (True, "forward"), (True, "backward"), (False, "forward")]
# (B, T, N, C): T in {1, 2, 3, 8}, odd N and C, batch 1, a width past one Triton block (1024).
SHAPES = [(1, 1, 3, 5), (2, 2, 1, 7), (1, 3, 5, 33), (3, 8, 2, 20), (1, 4, 1, 1), (2, 5, 3, 401)]


def _run(x, backend, g, absolute, direction):
    x = x.detach().requires_grad_()
    if backend is None:
        y = reference(x, absolute, direction)
    else:
        y = tds_kernels.temporal_adjacent_diff(x, absolute, direction, backend=backend)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(backend, device, dtype):
    exact = not (backend == "triton" and device == "cpu" and dtype == torch.bfloat16)
    for shape in SHAPES:
        for absolute, direction in MODES:
            x = torch.randn(shape, device=device).to(dtype)
            g = torch.randn(shape, device=device).to(dtype)
            y, dx = _run(x, backend, g, absolute, direction)
            y_ref, dx_ref = _run(x, None, g, absolute, direction)
            y64, dx64 = _run(x.double(), None, g.double(), absolute, direction)
            what = f"{backend} {shape} {dtype} absolute={absolute} {direction}"
            assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous(), what
            assert_parity(y, y_ref, y64, "y")
            assert_parity(dx, dx_ref, dx64, "dx")
            if exact:
                assert torch.equal(y, y_ref), f"{what}: forward differs"
                assert torch.equal(dx, dx_ref), f"{what}: backward differs"


def test_definition():
    """On a readable example: frames 1, 4, 2 (one token, one channel)."""
    x = torch.tensor([1.0, 4.0, 2.0]).view(1, 3, 1, 1)
    cases = {(False, "backward"): [0.0, 3.0, -2.0], (True, "backward"): [0.0, 3.0, 2.0],
             (False, "forward"): [-3.0, 2.0, 0.0], (True, "forward"): [3.0, 2.0, 0.0]}
    for backend in ["reference", "triton"] + (["cpu"] if HAS_CPU else []):
        for (absolute, direction), expected in cases.items():
            y = tds_kernels.temporal_adjacent_diff(x, absolute, direction, backend=backend)
            assert y.flatten().tolist() == expected, (backend, absolute, direction)
    # defaults: signed, backward
    assert tds_kernels.temporal_adjacent_diff(x).flatten().tolist() == [0.0, 3.0, -2.0]


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    views = {
        "transposed": torch.randn(2, 6, 5, 3, device=device).transpose(1, 2),      # (B, T=5, N=6, C=3)
        "channel slice": torch.randn(2, 4, 3, 30, device=device)[..., 3:24],
        "every other frame": torch.randn(2, 8, 2, 16, device=device)[:, ::2],
        "expanded batch": torch.randn(1, 3, 2, 16, device=device).expand(3, 3, 2, 16),
    }
    for name, x in views.items():
        assert not x.is_contiguous()
        for absolute, direction in MODES:
            g = torch.randn(x.shape, device=device)
            y, dx = _run(x, backend, g, absolute, direction)
            y_ref, dx_ref = _run(x, None, g, absolute, direction)
            assert torch.equal(y, y_ref), name
            assert torch.equal(dx, dx_ref), name


@pytest.mark.parametrize("backend", FUSED)
def test_special_values(backend):
    """NaN and inf propagate as in PyTorch; |.| of a zero difference has gradient 0 (torch.abs)."""
    x = torch.tensor([float("nan"), 1.0, float("inf"), 2.0, 5.0, -0.0]).view(1, 6, 1, 1)
    for absolute, direction in MODES:
        y = tds_kernels.temporal_adjacent_diff(x, absolute, direction, backend=backend)
        torch.testing.assert_close(y, reference(x, absolute, direction), equal_nan=True, rtol=0, atol=0)
    x = torch.tensor([3.0, 3.0, 1.0]).view(1, 3, 1, 1).requires_grad_()
    tds_kernels.temporal_adjacent_diff(x, True, "forward", backend=backend).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, -1.0]


@pytest.mark.parametrize("backend", FUSED)
def test_saved_tensors_and_double_backward(backend):
    """Signed: linear, autograd saves nothing; absolute: saves x only. Adjoint identity and double backward."""
    for absolute, direction in MODES:
        x = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            y = tds_kernels.temporal_adjacent_diff(x, absolute, direction, backend=backend)
        assert len(saved) == (1 if absolute else 0) and all(s.data_ptr() == x.data_ptr() for s in saved)
        g = torch.randn_like(y, requires_grad=True)
        (dx,) = torch.autograd.grad(y, x, g, create_graph=True)
        v = torch.randn_like(x)
        (dg,) = torch.autograd.grad(dx, g, v)
        d_v = reference(v, False, direction)
        expected = d_v * reference(x, False, direction).sign() if absolute else d_v
        torch.testing.assert_close(dg, expected, rtol=1e-12, atol=0)
        if not absolute:  # <D x, g> == <x, D^T g>
            torch.testing.assert_close((y * g).sum(), (x * dx).sum(), rtol=1e-12, atol=0)


@NEED_CPU
def test_gradcheck_cpu():
    for absolute, direction in MODES:
        x = torch.randn(2, 3, 2, 5, dtype=torch.float64, requires_grad=True)
        f = lambda t: tds_kernels.temporal_adjacent_diff(t, absolute, direction, backend="cpu")  # noqa: E731
        torch.autograd.gradcheck(f, (x,))
        torch.autograd.gradgradcheck(lambda t: f(t).square(), (x,))


@NEED_CPU
def test_opcheck_tds_ops():
    for absolute, direction in ((False, "backward"), (True, "forward")):
        x = torch.randn(2, 3, 4, 5, requires_grad=True)
        torch.library.opcheck(torch.ops.tds.temporal_adjacent_diff_forward.default, (x, absolute, direction))
        g = torch.randn(2, 3, 4, 5, requires_grad=True)
        torch.library.opcheck(torch.ops.tds.temporal_adjacent_diff_backward.default,
                              (g, x.detach() if absolute else None, absolute, direction))


def test_opcheck_triton_ops():
    for absolute, direction in ((False, "backward"), (True, "forward")):
        x = torch.randn(2, 3, 4, 5, requires_grad=True)
        torch.library.opcheck(diff_op.triton_forward, (x, absolute, direction))
        g = torch.randn(2, 3, 4, 5, requires_grad=True)
        torch.library.opcheck(diff_op.triton_backward, (g, x.detach() if absolute else None, absolute, direction))


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=NEED_CPU), "triton", "reference"])
@pytest.mark.parametrize("absolute,direction", [(False, "backward"), (True, "forward")])
def test_torch_compile_fullgraph(backend, absolute, direction):
    torch._dynamo.reset()

    def f(x):
        return tds_kernels.temporal_adjacent_diff(x.sin(), absolute, direction, backend=backend) * 3.0

    x, g = torch.randn(2, 4, 3, 20), torch.randn(2, 4, 3, 20)
    assert_compile_matches_eager(f, x, g)


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=NEED_CPU), "triton", "reference"])
def test_checkpoint(backend):
    for absolute, direction in MODES:
        def f(x):
            return tds_kernels.temporal_adjacent_diff(x.exp(), absolute, direction, backend=backend)

        x, g = torch.randn(2, 4, 3, 20), torch.randn(2, 4, 3, 20)
        assert_checkpoint_matches_eager(f, x, g)


BAD_INPUTS = [
    (lambda: (torch.randn(2, 3, 20), {}), ValueError, "4-D"),
    (lambda: (torch.randn(1, 2, 3, 4, 5), {}), ValueError, "4-D"),
    (lambda: (torch.ones(1, 2, 3, 4, dtype=torch.int64), {}), TypeError, "dtype"),
    (lambda: (torch.ones(1, 2, 3, 4, dtype=torch.bool), {}), TypeError, "dtype"),
    (lambda: (torch.randn(0, 2, 3, 4), {}), ValueError, "zero-size"),
    (lambda: (torch.randn(1, 0, 3, 4), {}), ValueError, "zero-size"),
    (lambda: (torch.randn(1, 2, 3, 0), {}), ValueError, "zero-size"),
    (lambda: ([[1.0, 2.0]], {}), TypeError, "torch.Tensor"),
    (lambda: (torch.randn(1, 2, 3, 4), {"direction": "left"}), ValueError, "direction"),
    (lambda: (torch.randn(1, 2, 3, 4), {"absolute": 1}), TypeError, "absolute"),
]


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=NEED_CPU), "triton"])
@pytest.mark.parametrize("make,exc,match", BAD_INPUTS)
def test_bad_input(backend, make, exc, match):
    x, kw = make()
    with pytest.raises(exc, match=match):
        tds_kernels.temporal_adjacent_diff(x, backend=backend, **kw)


@NEED_CPU
def test_extension_op_checks_its_arguments():
    with pytest.raises(RuntimeError, match="must be \\(B, T, N, C\\)"):
        torch.ops.tds.temporal_adjacent_diff_forward(torch.randn(2, 3), False, "backward")
    with pytest.raises(RuntimeError, match="direction"):
        torch.ops.tds.temporal_adjacent_diff_forward(torch.randn(1, 2, 3, 4), False, "left")
    with pytest.raises(RuntimeError, match="needs x"):
        torch.ops.tds.temporal_adjacent_diff_backward(torch.randn(1, 2, 3, 4), None, True, "backward")
