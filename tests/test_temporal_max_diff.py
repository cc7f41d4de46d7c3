"""tds_kernels.temporal_max_diff on every backend against its fp64 reference (docs/model.md §4 op 1).

Backends: "cpu" (the C++ kernel, when the extension is built), "triton" (under TRITON_INTERPRET=1 on
CPU tensors, so small shapes), and on a GPU machine "cuda" and "triton" on CUDA tensors. Outputs are
NaN-poisoned at allocation (conftest), so an unwritten element fails parity.
"""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import tds_kernels
from tds_kernels.ops.temporal_max_diff import op as tmd_op
from tds_kernels.ops.temporal_max_diff.reference import temporal_max_diff_reference as reference

from backends import op_backends
from parity import assert_checkpoint_matches_eager, assert_compile_matches_eager, assert_parity

# (backend, device); the Triton interpreter is slow, so it gets its own, smaller shape list.
HAS_CPU, HAS_CUDA, NEED_CPU, NEED_GPU, BACKENDS, FUSED = op_backends("temporal_max_diff_forward")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (B, T, N, C, k, mix): every T in {1, 2, 3, 8, 16}, odd N, C in {20, 64, 320, 512}, k in {3, 5, 7}.
FULL_SHAPES = [
    (2 if C == 64 else 1, T, N, C, k, mix)
    for (T, N), C, k, mix in itertools.product([(1, 3), (2, 5), (3, 7), (8, 3), (16, 1)], [20, 64, 320, 512],
                                               [3, 5, 7], [False, True])
]
SMALL_SHAPES = [(1, 1, 3, 20, 3, True), (2, 2, 5, 20, 5, False), (1, 3, 3, 64, 3, True),
                (1, 8, 3, 20, 7, True), (1, 16, 1, 20, 3, False), (1, 5, 3, 33, 5, False)]


def _interpreted(backend, device):
    return (backend, device) == ("triton", "cpu")


def _shapes(backend, device):
    return SMALL_SHAPES if _interpreted(backend, device) else FULL_SHAPES


def _run(x, k, mix, backend, g):
    """(y, dx) of the public function with the given backend (or None for the reference)."""
    x = x.detach().requires_grad_()
    y = reference(x, k, mix) if backend is None else tds_kernels.temporal_max_diff(x, k, mix, backend=backend)
    y.backward(g)
    return y.detach(), x.grad


def check_parity(x, k, mix, backend, name):
    """Fused output and dx vs the reference in x's dtype (plain) and in fp64 (ref64)."""
    g = torch.randn(x.shape, device=x.device).to(x.dtype)
    y, dx = _run(x, k, mix, backend, g)
    y_plain, dx_plain = _run(x, k, mix, None, g)
    y_64, dx_64 = _run(x.double(), k, mix, None, g.double())
    assert y.dtype == x.dtype and y.shape == x.shape
    ey = assert_parity(y, y_plain, y_64, f"{name} y")
    edx = assert_parity(dx, dx_plain, dx_64, f"{name} dx")
    return ey, edx


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_parity(backend, device, dtype):
    worst = [0.0, 0.0]
    for B, T, N, C, k, mix in _shapes(backend, device):
        x = torch.randn(B, T, N, C, device=device).to(dtype)
        ey, edx = check_parity(x, k, mix, backend, f"{backend}/{dtype} {(B, T, N, C)} k={k} mix={mix}")
        worst = [max(worst[0], ey), max(worst[1], edx)]
    print(f"{backend}/{device}/{dtype}: max |y - ref64| {worst[0]:.2e}, max |dx - ref64| {worst[1]:.2e}")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_float64_matches_reference(backend, device):
    """In fp64 the fused kernels do the reference's arithmetic: agreement to rounding."""
    shapes = _shapes(backend, device)
    for B, T, N, C, k, mix in shapes[::max(1, len(shapes) // 6)]:
        x = torch.randn(B, T, N, C, device=device, dtype=torch.float64)
        g = torch.randn_like(x)
        y, dx = _run(x, k, mix, backend, g)
        y_ref, dx_ref = _run(x, k, mix, None, g)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(dx, dx_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mix", [False, True])
def test_ties_route_like_max_pool(backend, device, mix):
    """Repeated values: the gradient of each window's max goes to the same (first) frame as F.max_pool1d."""
    shape = (1, 8, 1, 20) if _interpreted(backend, device) else (2, 8, 3, 20)
    x = torch.randint(-2, 3, shape, device=device).double()
    x[0, :, 0] = 1.0  # a token constant over time: every window is one big tie
    g = torch.randn_like(x)
    for k in (3, 5, 7):
        y, dx = _run(x, k, mix, backend, g)
        y_ref, dx_ref = _run(x, k, mix, None, g)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(dx, dx_ref, rtol=0, atol=1e-12)
    # constant token, k=3: window s routes to its first frame max(s-1, 0), so frame 0 receives two
    # windows, frames 1..6 one each, frame 7 none: dx = 1 - count.
    if not mix:
        _, dx = _run(x, 3, False, backend, torch.ones_like(x))
        torch.testing.assert_close(dx[0, :, 0, 0].cpu(), torch.tensor([-1., 0, 0, 0, 0, 0, 0, 1], dtype=torch.float64))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, in the interpreter
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_nan_and_inf_propagate_like_max_pool(backend, device):
    x = torch.randint(-2, 3, (1, 6, 2, 20), device=device).double()
    gen = torch.Generator().manual_seed(1)
    x[torch.rand(x.shape, generator=gen).to(device) < 0.1] = float("nan")
    x[torch.rand(x.shape, generator=gen).to(device) < 0.1] = float("-inf")
    x[0, :, 1, :2] = float("-inf")  # windows that are all -inf: max_pool keeps their first frame
    x[0, :, 1, 2] = float("nan")    # all NaN: the last NaN of each window wins
    g = torch.randn_like(x)
    for k in (3, 5):
        y, dx = _run(x, k, False, backend, g)
        y_ref, dx_ref = _run(x, k, False, None, g)
        assert torch.equal(y.isnan(), y_ref.isnan()), "NaN pattern differs from max_pool's"
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12, equal_nan=True)
        torch.testing.assert_close(dx, dx_ref, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_other_kernel_sizes(backend, device):
    """k = 1 and k > 7 (the C++ kernel's generic path; windows wider than the clip)."""
    for T, k in [(4, 1), (5, 9), (3, 11), (12, 9)]:
        if _interpreted(backend, device) and T > 5:
            continue
        x = torch.randint(-3, 4, (1, T, 3, 20), device=device).double()  # ties too
        for mix in (False, True):
            g = torch.randn_like(x)
            y, dx = _run(x, k, mix, backend, g)
            y_ref, dx_ref = _run(x, k, mix, None, g)
            torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
            torch.testing.assert_close(dx, dx_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    base = torch.randn(2, 3, 4, 41, device=device)  # (B, N, T, C+1)
    views = {
        "transposed": base[..., :20].transpose(1, 2),            # (B, T, N, C) with N and T swapped in memory
        "channel slice": base.transpose(1, 2)[..., 1:21],         # (B, T, N, 20) with a row stride of 41
        "channels_last-like": torch.randn(2, 20, 4, 3, device=device).permute(0, 2, 3, 1),
        "expanded batch": torch.randn(1, 4, 3, 20, device=device).expand(2, 4, 3, 20),
    }
    for name, x in views.items():
        assert not x.is_contiguous()
        check_parity(x, 3, True, backend, f"{backend} {name}")


@pytest.mark.parametrize("backend", FUSED)
def test_saves_only_x_for_backward(backend):
    x = torch.randn(2, 8, 5, 20, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = tds_kernels.temporal_max_diff(x, 3, True, backend=backend)
    assert len(saved) == 1, f"saved {len(saved)} tensors: {[(t.shape, t.dtype) for t in saved]}"
    assert saved[0].shape == x.shape and saved[0].dtype == x.dtype
    assert saved[0].data_ptr() == x.data_ptr(), "the saved tensor is not x itself"
    y.sum().backward()
    assert x.grad is not None


def test_reference_saves_more():
    """The saved-tensors check can fail: the reference (max_pool with indices) saves an index tensor."""
    x = torch.randn(2, 8, 5, 20, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        tds_kernels.temporal_max_diff(x, 3, True, backend="reference")
    assert any(t.dtype == torch.int64 for t in saved)


@pytest.mark.parametrize("backend", FUSED)
def test_double_backward_raises(backend):
    x = torch.randn(1, 4, 3, 20, requires_grad=True)
    y = tds_kernels.temporal_max_diff(x, 3, False, backend=backend)
    (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not implemented"):
        dx.sum().backward()


@NEED_CPU
def test_opcheck_tds_ops():
    x = torch.randn(2, 3, 5, 20, requires_grad=True)
    torch.library.opcheck(torch.ops.tds.temporal_max_diff_forward.default, (x, 3, True))
    torch.library.opcheck(torch.ops.tds.temporal_max_diff_backward.default,
                          (torch.randn(2, 3, 5, 20), x.detach(), 5, True))


def test_opcheck_triton_ops():
    x = torch.randn(1, 3, 3, 20, requires_grad=True)
    torch.library.opcheck(tmd_op.triton_forward, (x, 3, True))
    torch.library.opcheck(tmd_op.triton_backward, (torch.randn(1, 3, 3, 20), x.detach(), 3, True))


COMPILE_BACKENDS = [pytest.param("cpu", marks=NEED_CPU), "triton", "reference"]


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()

    def f(x):
        return tds_kernels.temporal_max_diff(x * 2.0, 3, True, backend=backend).sin()

    x = torch.randn(1, 4, 3, 20)
    g = torch.randn_like(x)
    assert_compile_matches_eager(f, x, g)


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_checkpoint(backend):
    def f(x):
        return tds_kernels.temporal_max_diff(x.exp(), 5, True, backend=backend)

    x = torch.randn(2, 4, 3, 20)
    g = torch.randn_like(x)
    assert_checkpoint_matches_eager(f, x, g)


def test_matches_max_pool_definition():
    """The reference itself: x - max over the k-frame window with -inf padding (no wrap)."""
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    padded = F.pad(x, (0, 0, 0, 0, 1, 1), value=float("-inf"))
    manual = x - torch.stack([padded[:, t:t + 3].amax(1) for t in range(6)], 1)
    torch.testing.assert_close(reference(x, 3, False), manual)


BAD_INPUTS = [
    (lambda: (torch.randn(2, 3, 20),), {}, ValueError, "4-D"),
    (lambda: (torch.randn(1, 2, 3, 4, 5),), {}, ValueError, "4-D"),
    (lambda: (torch.randn(1, 3, 2, 4),), {"kernel_size": 4}, ValueError, "kernel_size must be odd"),
    (lambda: (torch.randn(1, 3, 2, 4),), {"kernel_size": 0}, ValueError, "kernel_size must be odd and positive"),
    (lambda: (torch.randn(1, 3, 2, 4),), {"kernel_size": -3}, ValueError, "kernel_size"),
    (lambda: (torch.randn(1, 3, 2, 4),), {"kernel_size": 3.0}, TypeError, "kernel_size must be an int"),
    (lambda: (torch.randn(1, 3, 2, 4),), {"mix": 1}, TypeError, "mix must be a bool"),
    (lambda: (torch.ones(1, 3, 2, 4, dtype=torch.int32),), {}, TypeError, "dtype"),
    (lambda: (torch.ones(1, 3, 2, 4, dtype=torch.complex64),), {}, TypeError, "dtype"),
    (lambda: (torch.randn(0, 3, 2, 4),), {}, ValueError, "zero-size"),
    (lambda: (torch.randn(1, 0, 2, 4),), {}, ValueError, "zero-size"),
    (lambda: (torch.randn(1, 3, 2, 0),), {}, ValueError, "zero-size"),
    (lambda: (torch.randn(1, 3, 2, 4).numpy(),), {}, TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=NEED_CPU), "triton"])
@pytest.mark.parametrize("make_args,kwargs,exc,match", BAD_INPUTS)
def test_bad_input(backend, make_args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tds_kernels.temporal_max_diff(*make_args(), backend=backend, **kwargs)


@NEED_CPU
def test_extension_op_checks_its_arguments():
    """Direct calls of the tds:: ops (bypassing the Python checks) fail cleanly, not with a crash."""
    with pytest.raises(RuntimeError, match="kernel_size must be odd"):
        torch.ops.tds.temporal_max_diff_forward(torch.randn(1, 2, 3, 4), 2, False)
    with pytest.raises(RuntimeError, match="must be \\(B, T, N, C\\)"):
        torch.ops.tds.temporal_max_diff_forward(torch.randn(2, 3, 4), 3, False)
    with pytest.raises(RuntimeError, match="grad_out shape"):
        torch.ops.tds.temporal_max_diff_backward(torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 4), 3, False)


@NEED_GPU
def test_cuda_device_mismatch_rejected():
    with pytest.raises(RuntimeError, match="grad_out is on"):
        torch.ops.tds.temporal_max_diff_backward(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4, device="cuda"),
                                                 3, False)
