"""Tests of the fused TD-Adapter (docs/model.md §4 op 2) on every backend available here.

The fused TDAdapter module (same state_dict as the reference module) must match the float64 reference
within 2x the error of plain PyTorch in the same dtype (tests/parity.py): the output, the gradient of u
and of all 6 parameters, and the running buffers after a training step. The C++ kernel runs every case;
the Triton kernels run under TRITON_INTERPRET=1 (conftest) on small shapes; CUDA only with a GPU.
"""
from __future__ import annotations

import copy

import pytest
import torch

import tds_kernels
from tds_kernels import _dispatch, _ext
from tds_kernels.ops.td_adapter import TDAdapter, td_adapter
from tds_kernels.ops.td_adapter.reference import td_adapter_functional_reference

from parity import assert_parity

HAS_EXT = _ext.has_extension() and _ext.has_kernel("td_adapter_forward", "cpu")
HAS_CUDA = torch.cuda.is_available() and _ext.built_with_cuda()
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="tds_kernels._C (with the td_adapter kernels) is not built")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no GPU or no CUDA build")
needs_triton = pytest.mark.skipif(not _dispatch.triton_available(), reason="triton is not installed")

PARAMS = ("down.weight", "bn1.weight", "bn1.bias", "up.weight", "bn2.weight", "bn2.bias")
BUFFERS = ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var")


# ---- helpers -----------------------------------------------------------------------------------

def make_module(d, r, k=3, variant="gated", seed=0, neg_gamma=True, dyadic=False):
    """A float32 reference module with non-trivial BN affine parameters (every third BN gamma negative,
    which turns BN1's max into a min of b) and non-trivial running statistics. dyadic: the reduce
    weights are multiples of 1/64, so b = u @ w_down^T is exact for small integer u in any summation
    order (equal frames then give bit-equal b on every backend)."""
    g = torch.Generator().manual_seed(seed)
    m = TDAdapter(d, r, k, variant, backend="reference")
    with torch.no_grad():
        for p in (m.down.weight, m.up.weight):
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        if dyadic:
            m.down.weight.copy_((m.down.weight * 64).round() / 64)
        for bn in (m.bn1, m.bn2):
            n = bn.num_features
            w = torch.rand(n, generator=g) + 0.5
            if neg_gamma:
                w = w * torch.where(torch.arange(n) % 3 == 1, -1.0, 1.0)
            bn.weight.copy_(w)
            bn.bias.copy_(torch.rand(n, generator=g) - 0.5)
            bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return m


def clone_as(m, backend, dtype=torch.float32):
    c = copy.deepcopy(m).to(dtype)
    c.backend = backend
    return c


def run(m, u, g, training):
    """Output, grad of u, grads of the parameters, buffers after the step."""
    m.train(training)
    m.zero_grad(set_to_none=True)
    u = u.detach().clone().requires_grad_(True)  # clone keeps u's strides
    out = m(u)
    out.backward(g.to(out.dtype))
    strip = lambda n: n.removeprefix("_orig_mod.")  # noqa: E731  (torch.compile's wrapper)
    grads = {strip(n): p.grad for n, p in m.named_parameters()}
    bufs = {strip(n): b.detach().clone() for n, b in m.named_buffers()}
    return out.detach(), u.grad, grads, bufs


def check_module(backend, B, T, N, d, r, k=3, variant="gated", training=True, dtype=torch.float32, seed=0,
                 device="cpu", make_u=None, dyadic=False):
    """Fused module vs the float64 reference module; 'plain' is the reference module run in `dtype`."""
    ref = make_module(d, r, k, variant, seed=seed, dyadic=dyadic)
    gen = torch.Generator().manual_seed(seed + 1)
    u = make_u(gen) if make_u is not None else torch.randn(B, T, N, d, generator=gen)
    # every run sees the same input values: those representable in `dtype` (else rounding u to bf16
    # alone moves near-tied window maxima and the gradient routing of every low-precision run)
    u = u.to(dtype)
    g = torch.randn(u.shape, generator=gen).to(dtype)
    # The references get u contiguous: torch 2.14's CPU BatchNorm3d backward returns wrong gradients
    # for some strided inputs, which reference.py's view of a non-contiguous u produces.
    uc = u.contiguous()
    ref64 = run(clone_as(ref, "reference", torch.float64), uc.double(), g.double(), training)
    plain = run(clone_as(ref, "reference", dtype), uc, g, training)
    # weights stay float32 under fp16/bf16 inputs, as under autocast (float64 for float64 inputs)
    fused_m = clone_as(ref, backend, torch.float64 if dtype == torch.float64 else torch.float32).to(device)
    fused = run(fused_m, u.to(device), g.to(device), training)
    assert fused[0].dtype == dtype and fused[1].dtype == dtype
    errs = {"out": assert_parity(fused[0].cpu(), plain[0], ref64[0], f"{backend} out", dtype=dtype),
            "grad u": assert_parity(fused[1].cpu(), plain[1], ref64[1], f"{backend} grad u", dtype=dtype)}
    for n in PARAMS:  # float32 parameter gradients, judged against plain PyTorch in the input dtype
        errs[n] = assert_parity(fused[2][n].cpu(), plain[2][n], ref64[2][n], f"{backend} grad {n}", dtype=dtype)
    for n in BUFFERS:
        assert_parity(fused[3][n].cpu(), plain[3][n], ref64[3][n], f"{backend} {n}", dtype=dtype)
    for n in ("bn1.num_batches_tracked", "bn2.num_batches_tracked"):
        assert fused[3][n].item() == ref64[3][n].item()
    return errs


def op_args(B=2, T=3, N=5, d=64, h=32, dtype=torch.float32, device="cpu", seed=0):
    """Arguments of td_adapter / tds::td_adapter_forward up to the flags."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    u = r(B, T, N, d).to(dtype)
    return [u, r(h, d) / d ** 0.5, r(d, h) / h ** 0.5, r(h).abs() + 0.5, r(h), r(d).abs() + 0.5, r(d),
            r(h) * 0.1, r(h).abs() + 0.5, r(d) * 0.1, r(d).abs() + 0.5]


def tied_frames(B, T, N, d, pattern, integer=False):
    """u whose frame t is a copy of frame pattern[t]: exact ties in the windows. integer: values in
    {-4..4} (with dyadic reduce weights, b is then exact whatever order a GEMM sums in)."""
    def make(gen):
        if integer:
            u = torch.randint(-4, 5, (B, T, N, d), generator=gen).float()
        else:
            u = torch.randn(B, T, N, d, generator=gen)
        return u[:, list(pattern)].contiguous()
    return make


# ---- the C++ CPU kernel: parity over dtypes, modes, variants and shapes ---------------------------

CPU_SHAPES = [  # (B, T, N, d, r, k): h = 32 and 20, T in {1, 2, 3, 8}, odd N, batch 1, k in {3, 5, 7}
    (2, 8, 5, 64, 2, 3),
    (1, 3, 7, 20, 1, 5),
    (2, 1, 9, 40, 2, 3),
    (1, 2, 3, 64, 2, 7),
]


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("variant", ["gated", "plain"])
@pytest.mark.parametrize("shape", CPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpu_parity(shape, variant, training, dtype):
    B, T, N, d, r, k = shape
    check_module("cpu", B, T, N, d, r, k, variant, training, dtype)


@needs_ext
@pytest.mark.parametrize("shape", [(2, 8, 3, 320, 16, 3), (1, 8, 3, 512, 16, 5)], ids=["d320", "d512"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_cpu_parity_model_widths(shape, training):
    B, T, N, d, r, k = shape
    check_module("cpu", B, T, N, d, r, k, "gated", training, torch.float32)


@needs_ext
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("variant", ["gated", "plain"])
def test_cpu_float64_is_exact(training, variant):
    """In float64 the fused algebra (BN2 statistics from the narrow covariance, BN2 backward in narrow
    terms) agrees with the layer reference to rounding."""
    ref = make_module(64, 2, 3, variant).double()
    u = torch.randn(2, 5, 7, 64, dtype=torch.float64)
    g = torch.randn_like(u)
    a = run(clone_as(ref, "reference", torch.float64), u, g, training)
    b = run(clone_as(ref, "cpu", torch.float64), u, g, training)
    torch.testing.assert_close(b[0], a[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b[1], a[1], rtol=1e-10, atol=1e-11)
    for n in PARAMS:
        torch.testing.assert_close(b[2][n], a[2][n], rtol=1e-10, atol=1e-10)
    for n in BUFFERS:
        torch.testing.assert_close(b[3][n], a[3][n], rtol=1e-10, atol=1e-12)


@needs_ext
@pytest.mark.parametrize("variant", ["gated", "plain"])
def test_cpu_float64_training_many_tokens_two_threads(variant):
    """Issue #12 (c): with more than one block of rows (> 256 tokens) the expand runs in at::parallel_for
    workers, where grad mode is on and the float64 weights (not copied: already the accumulation dtype)
    require grad: ATen's out= GEMMs there raised "addmm(): functions with out=... arguments don't support
    automatic differentiation". 2 clips x 4 frames x 49 tokens = 392 rows, 2 threads."""
    ref = make_module(64, 4, 3, variant).double()
    u = torch.randn(2, 4, 49, 64, dtype=torch.float64)
    g = torch.randn_like(u)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        b = run(clone_as(ref, "cpu", torch.float64), u, g, True)
    finally:
        torch.set_num_threads(threads)
    a = run(clone_as(ref, "reference", torch.float64), u, g, True)
    torch.testing.assert_close(b[0], a[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b[1], a[1], rtol=1e-10, atol=1e-11)
    for n in PARAMS:
        torch.testing.assert_close(b[2][n], a[2][n], rtol=1e-10, atol=1e-10)


@needs_ext
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_cpu_ties_route_like_the_reference(training):
    """Equal frames give equal b, so windows have several maxima: the gradient must go to the first,
    as max_pool3d does (another choice changes grad u and the weight gradients)."""
    make_u = tied_frames(2, 6, 3, 64, (0, 0, 1, 1, 1, 2))
    check_module("cpu", 2, 6, 3, 64, 2, 3, "gated", training, torch.float64, make_u=make_u)
    check_module("cpu", 2, 6, 3, 64, 2, 5, "plain", training, torch.float32, make_u=make_u)


@needs_ext
def test_cpu_zero_bn1_gamma_ties_everything():
    """gamma1 = 0 makes BN1's output constant: every window ties and routes to its first frame."""
    ref = make_module(64, 2, 3)
    with torch.no_grad():
        ref.bn1.weight[::2] = 0.0
    u = torch.randn(2, 4, 3, 64, dtype=torch.float64)
    g = torch.randn_like(u)
    a = run(clone_as(ref, "reference", torch.float64), u, g, True)
    b = run(clone_as(ref, "cpu", torch.float64), u, g, True)
    torch.testing.assert_close(b[1], a[1], rtol=1e-9, atol=1e-10)
    for n in PARAMS:
        torch.testing.assert_close(b[2][n], a[2][n], rtol=1e-9, atol=1e-10)


@needs_ext
def test_cpu_non_contiguous_input():
    base = torch.randn(2, 7, 4, 64)  # stored (B, N, T, d): frames are not dim 1 in memory
    check_module("cpu", 2, 4, 7, 64, 2, 3, make_u=lambda gen: base.transpose(1, 2))


@needs_ext
def test_cpu_functional_matches_functional_reference():
    """The public function on the cpu backend against the functional reference backend, statistics too."""
    args = op_args(dtype=torch.float64)
    for training in (True, False):
        a = td_adapter(*args, training=training, backend="cpu")
        b = td_adapter(*args, training=training, backend="reference")
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_functional_reference_matches_the_layer_reference():
    """The "reference" backend of td_adapter() (F.linear / F.batch_norm / F.max_pool1d) against the
    layer reference module, values, gradients and statistics, in float64."""
    ref = make_module(64, 2, 5).double().train()
    u = torch.randn(2, 5, 3, 64, dtype=torch.float64, requires_grad=True)
    out = ref(u)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [u, *ref.parameters()], g)
    m2 = make_module(64, 2, 5).double()
    u2 = u.detach().clone().requires_grad_(True)
    out2, mean1, var1, _, _ = td_adapter_functional_reference(
        u2, m2.down.weight.view(32, 64), m2.up.weight.view(64, 32), m2.bn1.weight, m2.bn1.bias, m2.bn2.weight,
        m2.bn2.bias, m2.bn1.running_mean, m2.bn1.running_var, m2.bn2.running_mean, m2.bn2.running_var, True,
        1e-5, 5, True, True)
    grads2 = torch.autograd.grad(out2, [u2, *m2.parameters()], g)
    torch.testing.assert_close(out2, out)
    for a, b in zip(grads2, grads):
        torch.testing.assert_close(a, b)
    b1 = u.detach().reshape(-1, 64) @ ref.down.weight.view(32, 64).t()
    torch.testing.assert_close(mean1, b1.mean(0))
    torch.testing.assert_close(var1, b1.var(0, unbiased=False))


# ---- Triton (interpreter on the CPU; small shapes) --------------------------------------------------

TRITON_CASES = [  # (B, T, N, d, r, k, variant, training, dtype)
    (2, 3, 5, 64, 2, 3, "gated", True, torch.float32),
    (2, 3, 5, 64, 2, 3, "gated", False, torch.float32),
    (1, 2, 3, 20, 1, 5, "plain", True, torch.float32),
    (1, 1, 5, 40, 2, 3, "gated", True, torch.float16),
    (1, 4, 3, 64, 2, 7, "plain", False, torch.bfloat16),
]


@needs_triton
@pytest.mark.parametrize("case", TRITON_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[6]}-"
                         f"{'train' if c[7] else 'eval'}-{str(c[8])[6:]}")
def test_triton_parity(case):
    B, T, N, d, r, k, variant, training, dtype = case
    check_module("triton", B, T, N, d, r, k, variant, training, dtype)


@needs_triton
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_triton_ties_and_non_contiguous(training):
    # Exact data: the interpreter's tl.dot is numpy's BLAS, which rounds equal rows differently by their
    # position in the tile (a GPU's MMA does not); with rounded b the "ties" would not be ties.
    make_u = tied_frames(1, 5, 3, 64, (0, 0, 1, 1, 2), integer=True)
    check_module("triton", 1, 5, 3, 64, 2, 3, "gated", training, torch.float32, dyadic=True,
                 make_u=lambda gen: make_u(gen).transpose(1, 2).contiguous().transpose(1, 2))


@needs_triton
def test_triton_rejects_float64():
    with pytest.raises(TypeError, match="triton"):
        td_adapter(*op_args(dtype=torch.float64), training=True, backend="triton")


# ---- CUDA (only with a GPU) ----------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("variant", ["gated", "plain"])
def test_cuda_parity(variant, training, dtype):
    check_module("cuda", 2, 8, 7, 320, 16, 3, variant, training, dtype, device="cuda")
    check_module("cuda", 1, 3, 5, 64, 2, 5, variant, training, dtype, device="cuda")


# ---- torch.library: opcheck, compile, checkpoint, saved tensors ----------------------------------

def _grad_args(**kw):
    """op_args with u, the weights, gammas and betas requiring grad (opcheck then tests autograd)."""
    return [a.requires_grad_(i < 7) for i, a in enumerate(op_args(**kw))]


@needs_ext
def test_opcheck_cpu_ops():
    args = _grad_args()
    for training in (True, False):
        for mg in (True, False):
            flags = (training, 1e-5, 3, mg, mg)
            torch.library.opcheck(torch.ops.tds.td_adapter_forward.default, (*args, *flags))
            with torch.no_grad():
                out = torch.ops.tds.td_adapter_forward(*args, *flags)
            torch.library.opcheck(torch.ops.tds.td_adapter_backward.default,
                                  (torch.randn_like(out[0]), *[a.detach() for a in args[:7]], *out[1:], *flags))


@needs_triton
def test_opcheck_triton_ops():
    args = _grad_args(B=1, T=2, N=3, d=20, h=20)
    flags = (True, 1e-5, 3, True, True)
    torch.library.opcheck(torch.ops.tds_triton.td_adapter_forward.default, (*args, *flags),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    with torch.no_grad():
        out = torch.ops.tds_triton.td_adapter_forward(*args, *flags)
    torch.library.opcheck(torch.ops.tds_triton.td_adapter_backward.default,
                          (torch.randn_like(out[0]), *[a.detach() for a in args[:7]], *out[1:], *flags),
                          test_utils=("test_schema", "test_faketensor"))


@needs_ext
def test_compile_fullgraph_module_and_function():
    torch._dynamo.reset()
    ref = make_module(64, 2, 3)
    eager = clone_as(ref, "cpu")
    compiled = torch.compile(clone_as(ref, "cpu"), fullgraph=True, backend="aot_eager")
    u = torch.randn(2, 3, 5, 64)
    g = torch.randn_like(u)
    a, b = run(eager, u, g, True), run(compiled, u, g, True)
    torch.testing.assert_close(b[0], a[0])
    torch.testing.assert_close(b[1], a[1])
    for n in PARAMS:
        torch.testing.assert_close(b[2][n], a[2][n])
    for n in BUFFERS:
        torch.testing.assert_close(b[3][n], a[3][n])
    args = op_args()
    f = torch.compile(lambda *a: td_adapter(*a, training=False, backend="cpu")[0], fullgraph=True)
    torch.testing.assert_close(f(*args), td_adapter(*args, training=False, backend="cpu")[0])


@needs_ext
def test_checkpoint_non_reentrant():
    from torch.utils.checkpoint import checkpoint
    ref = make_module(64, 2, 3)
    u = torch.randn(2, 3, 5, 64)
    g = torch.randn_like(u)
    a = run(clone_as(ref, "cpu"), u, g, True)
    m = clone_as(ref, "cpu").train()
    u2 = u.clone().requires_grad_(True)
    out = checkpoint(m, u2, use_reentrant=False)
    out.backward(g)
    torch.testing.assert_close(out, a[0])
    torch.testing.assert_close(u2.grad, a[1])
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, a[2][n])


def _saved(fn):
    """fn's output and (shape, numel, bytes) of every tensor autograd saves for its backward."""
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.numel(), t.numel() * t.element_size()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_ext), pytest.param("triton", marks=needs_triton)])
def test_backward_saves_only_u_weights_and_stats(backend):
    d, r = 64, 2
    m = clone_as(make_module(d, r), backend).train()
    u = torch.randn(2, 3, 5, d, requires_grad=True)
    out, saved = _saved(lambda: m(u))
    allowed = (u.numel() * u.element_size() + sum(p.numel() * p.element_size() for p in m.parameters())
               + 2 * (m.hidden + d) * 4)  # + the float32 mean / var of both BNs
    total = sum(b for _, _, b in saved)
    assert total <= allowed, f"saved {total} bytes > u + weights + stats = {allowed}: {saved}"
    # nothing else: u, the two weights, and vectors of h or d values (gammas, betas, statistics)
    shapes = {tuple(u.shape), (m.hidden, d), (d, m.hidden), (m.hidden,), (d,)}
    assert all(shape in shapes for shape, _, _ in saved), f"an intermediate was saved: {saved}"
    _, ref_saved = _saved(lambda: clone_as(make_module(d, r), "reference").train()(u))
    assert sum(b for _, _, b in ref_saved) > 2 * total  # the layer reference keeps its intermediates
    out.sum().backward()
    assert u.grad is not None


# ---- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_ext), "reference",
                                     pytest.param("triton", marks=needs_triton)])
def test_bad_input_is_a_clear_error(backend):
    args = op_args()

    def call(i=None, value=None, training=True, **kw):
        a = list(args)
        if i is not None:
            a[i] = value
        return td_adapter(*a, training=training, backend=backend, **kw)

    with pytest.raises(ValueError, match="u must be 4-D"):
        call(0, args[0][0])
    with pytest.raises(ValueError, match="w_down must be"):
        call(1, torch.randn(32, 48))
    with pytest.raises(ValueError, match="w_up must be"):
        call(2, torch.randn(64, 16))
    with pytest.raises(ValueError, match="gamma1 must have shape"):
        call(3, torch.randn(31))
    with pytest.raises(ValueError, match="running_var2 must have shape"):
        call(10, torch.randn(63))
    with pytest.raises(ValueError, match="kernel_size"):
        call(kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size"):
        call(kernel_size=0)
    with pytest.raises(TypeError, match="u must be"):
        call(0, args[0].to(torch.int32))
    with pytest.raises(ValueError, match="is on meta"):
        call(1, args[1].to("meta"))
    with pytest.raises(ValueError, match="zero-size"):
        call(0, args[0][:, :0])
    with pytest.raises(ValueError, match="more than one value per channel"):
        call(0, args[0][:1, :1, :1])


@needs_ext
def test_bad_input_to_the_raw_ops():
    """Called directly (no Python checks), the kernels still refuse bad input with a clear error."""
    args = op_args()
    flags = (True, 1e-5, 3, True, True)
    with pytest.raises(ValueError, match="u must be"):
        torch.ops.tds.td_adapter_forward(args[0][0], *args[1:], *flags)
    with pytest.raises(ValueError, match="w_up"):
        torch.ops.tds.td_adapter_forward(args[0], args[1], torch.randn(64, 16), *args[3:], *flags)
    with pytest.raises(ValueError, match="kernel_size"):
        torch.ops.tds.td_adapter_forward(*args, True, 1e-5, 2, True, True)
    with pytest.raises(TypeError, match="u must be"):
        torch.ops.tds.td_adapter_forward(args[0].int(), *args[1:], *flags)
    out = torch.ops.tds.td_adapter_forward(*args, *flags)
    with pytest.raises(ValueError, match="grad_out"):
        torch.ops.tds.td_adapter_backward(out[0][:1], *args[:7], *out[1:], *flags)


def test_module_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"\(B, T, N, 64\)"):
        TDAdapter(64, 2)(torch.randn(2, 3, 5, 32))


# ---- dispatch ----------------------------------------------------------------------------------------

@needs_ext
def test_automatic_backend_on_cpu_is_the_extension(monkeypatch):
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    assert tds_kernels.resolve("td_adapter", None, torch.device("cpu")) == "cpu"
    monkeypatch.setenv(_dispatch.ENV_VAR, "reference")
    assert tds_kernels.resolve("td_adapter", None, torch.device("cpu")) == "reference"
