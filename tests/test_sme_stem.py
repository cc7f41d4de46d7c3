"""Tests of the fused SME stem (docs/model.md §4 op 3) on every backend available here.

Each fused backend runs the SMEStem module (same state_dict as the reference module) and must match
the fp64 reference within 2x the error of plain PyTorch in the same dtype (tests/parity.py): the
tokens, the gradients of all 8 parameters and the running buffers after the update. The Triton
kernels run under TRITON_INTERPRET=1 on small shapes; CUDA only where a GPU exists.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from tds_kernels import _dispatch, _ext
from tds_kernels.ops.sme_stem import SMEStem, sme_stem
from tds_kernels.ops.sme_stem.reference import sme_stem_functional_reference
from tds_kernels.ops.sme_stem.reference import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from parity import assert_parity

HAS_EXT = _ext.has_extension()
HAS_CUDA = torch.cuda.is_available() and _ext.built_with_cuda()
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="tds_kernels._C is not built")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no GPU or no CUDA build")

PARAMS = ("conv_rgb.weight", "conv_rgb.bias", "bn_rgb.weight", "bn_rgb.bias",
          "conv_mot.weight", "conv_mot.bias", "bn_mot.weight", "bn_mot.bias")
BUFFERS = ("bn_rgb.running_mean", "bn_rgb.running_var", "bn_mot.running_mean", "bn_mot.running_var")


# ---- helpers ---------------------------------------------------------------------------------

def make_module(d, P, padding=(1, 1, 1), alpha=0.5, seed=0):
    """A float32 reference module with non-trivial BN affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    m = SMEStem(d, P, alpha=alpha, padding=padding, backend="reference")
    with torch.no_grad():
        for bn in (m.bn_rgb, m.bn_mot):
            bn.weight.copy_(torch.rand(d, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(d, generator=g) - 0.5)
            bn.running_mean.copy_(torch.rand(d, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(d, generator=g) + 0.5)
    return m


def make_frames(B, T, H, W, dtype=torch.uint8, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    f = torch.randint(0, 256, (B, T, 5, 3, H, W), generator=g, dtype=torch.uint8)
    if dtype != torch.uint8:  # float pixel values, not only integers
        f = (f.to(torch.float64) + torch.rand(f.shape, generator=g, dtype=torch.float64)).clamp(max=255).to(dtype)
    return f.to(device)


def run(module, frames, grad_seed=2, steps=1):
    """Forward (steps times, updating running stats) + backward of <out, G>: out, grads, buffers."""
    for p in module.parameters():
        p.grad = None
    for _ in range(steps):
        out = module(frames)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    # The upstream gradient takes the output's memory layout. The reference's tokens are a permuted view
    # of a (B, d, T, h, w) tensor; a contiguous gradient reaches its BatchNorm3d in channels_last_3d
    # layout, and torch's CPU batch_norm backward is wrong there when B == 1 (torch 2.14.1; see
    # test_torch_cpu_batchnorm_channels_last_batch1_bug). The fused outputs are contiguous anyway.
    (out * torch.empty_like(out).copy_(g)).sum().backward()
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    return out.detach(), {n: params[n].grad for n in PARAMS}, {n: buffers[n].detach().clone() for n in BUFFERS}


def check_module_parity(backend, base, frames, dtype, train=True, steps=1, device="cpu", frames64=None,
                        buffer_atol=None):
    """fused (backend, dtype) vs plain (reference, dtype) vs fp64 reference; returns the max errors."""
    fused = copy.deepcopy(base).to(device=device, dtype=dtype).train(train)
    fused.backend = backend
    plain = copy.deepcopy(base).to(device=device, dtype=dtype).train(train)
    ref = copy.deepcopy(fused).to(dtype=torch.float64).train(train)  # same (rounded) parameters, in fp64
    ref.backend = "reference"
    if frames64 is None:
        frames64 = frames if frames.dtype == torch.uint8 else frames.to(torch.float64)
    res_f = run(fused, frames, steps=steps)
    res_p = run(plain, frames, steps=steps)
    res_r = run(ref, frames64, steps=steps)
    errs = {"tokens": assert_parity(res_f[0], res_p[0], res_r[0], f"{backend} tokens", dtype=dtype)}
    for n in PARAMS:
        errs[n] = assert_parity(res_f[1][n], res_p[1][n], res_r[1][n], f"{backend} grad {n}", dtype=dtype)
    for n in BUFFERS:
        errs[n] = assert_parity(res_f[2][n], res_p[2][n], res_r[2][n], f"{backend} buffer {n}", dtype=dtype,
                                atol=buffer_atol)
    assert res_f[0].shape == res_r[0].shape
    return errs


def functional_args(d=16, P=4, bias=True, dtype=torch.float32, device="cpu", seed=3):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: (torch.randn(*s, generator=g, dtype=torch.float64) * 0.1).to(device, dtype)  # noqa: E731
    vec = lambda lo: (torch.rand(d, generator=g, dtype=torch.float64) + lo).to(device, dtype)  # noqa: E731
    w_rgb, w_mot = rnd(d, 3, 3, P, P), rnd(d, 12, 3, P, P)
    b_rgb, b_mot = (rnd(d), rnd(d)) if bias else (None, None)
    return [w_rgb, b_rgb, w_mot, b_mot, vec(0.5), vec(-0.5), vec(0.5), vec(-0.5), vec(-0.5), vec(0.5), vec(-0.5),
            vec(0.5)]


KW = dict(pixel_mean=OPENAI_CLIP_MEAN, pixel_std=OPENAI_CLIP_STD)


# ---- C++ CPU kernel --------------------------------------------------------------------------

# (B, T, H, W, P, d, padding, frames dtype, alpha): odd sizes, remainders dropped by the conv,
# T = 1 / 2 / 3 / 8, batch 1, both paddings, uint8 and float frames.
CPU_CASES = [
    (2, 3, 13, 13, 4, 16, (1, 1, 1), torch.uint8, 0.5),
    (1, 1, 13, 11, 4, 16, (1, 0, 0), torch.float32, 0.5),
    (1, 2, 33, 33, 16, 64, (1, 1, 1), torch.uint8, 1.0),
    (2, 8, 30, 29, 14, 64, (1, 0, 0), torch.uint8, 0.5),
    (1, 2, 32, 32, 16, 320, (1, 1, 1), torch.uint8, -0.7),
    (1, 3, 12, 17, 4, 16, (1, 1, 1), torch.float16, 0.5),
    (2, 4, 9, 10, 4, 16, (0, 1, 1), torch.uint8, 0.5),  # T_out = T - 2 (no temporal padding)
    (1, 1, 8, 9, 4, 16, (2, 0, 0), torch.uint8, 0.5),   # T_out = T + 2 (odd: a half-filled last tile)
]


@needs_ext
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: "B{}T{}H{}W{}P{}d{}pad{}{}{}-{}".format(
    *c[:6], *c[6], str(c[7]).split(".")[-1]))
def test_cpu_parity_fp32(case, train):
    B, T, H, W, P, d, padding, fdtype, alpha = case
    base = make_module(d, P, padding, alpha)
    frames = make_frames(B, T, H, W, fdtype)
    check_module_parity("cpu", base, frames, torch.float32, train=train)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_parity_half(dtype):
    base = make_module(32, 4, (1, 1, 1))
    for train in (True, False):
        check_module_parity("cpu", base, make_frames(2, 3, 13, 12), dtype, train=train)
    check_module_parity("cpu", base, make_frames(1, 2, 9, 9, dtype), dtype, train=True)


def test_parity_baseline_is_defined_when_plain_pytorch_returns_nan():
    """test_cpu_parity_half (bf16) failed in 4 of 7 runs elsewhere: torch's own bf16 CPU gradient of
    conv_rgb.weight came out NaN and the rule compared against 2 x NaN. The plain baseline now cannot be NaN
    (tests/parity.py): a NaN element of the plain result counts with the dtype's rounding error of ref64."""
    from parity import plain_err

    ref64 = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    plain = torch.tensor([1.0, float("nan"), 3.0 + 2 ** -6], dtype=torch.bfloat16)
    ep = plain_err(plain, ref64, torch.bfloat16)
    assert ep == 2 ** -6  # the finite elements' error; the NaN one counts with |bf16(-2) - (-2)| = 0
    assert_parity(ref64.to(torch.bfloat16), plain, ref64, "nan baseline")  # a good fused result passes
    with pytest.raises(AssertionError, match="fused result contains NaN"):
        assert_parity(plain, plain, ref64, "nan fused")  # a NaN in the fused result still fails


@needs_ext
def test_cpu_float64_exact():
    """In float64 the fused kernel agrees with the reference to rounding (1e-10 relative). The running
    variance only to ~1e-7: tds_kernels/_bn.py rounds the batch variance to float32 before the update."""
    base = make_module(16, 4, (1, 1, 1))
    errs = check_module_parity("cpu", base, make_frames(2, 3, 11, 13), torch.float64, train=True, steps=2,
                               buffer_atol=1e-6)
    assert max(v for k, v in errs.items() if k not in BUFFERS) < 1e-9


@needs_ext
def test_cpu_noncontiguous_frames_and_running_stats_over_steps():
    base = make_module(16, 4, (1, 1, 1))
    big = make_frames(2, 4, 14, 15)
    frames = big[:, 1:, :, :, 1:, ::2]  # sliced time, offset rows, strided columns: (2, 3, 5, 3, 13, 8)
    assert not frames.is_contiguous()
    check_module_parity("cpu", base, frames, torch.float32, train=True, steps=3)
    framesf = make_frames(2, 3, 9, 9, torch.float32).permute(0, 1, 2, 4, 5, 3).contiguous().permute(0, 1, 2, 5, 3, 4)
    assert not framesf.is_contiguous()
    check_module_parity("cpu", base, framesf, torch.float32, train=False)


@needs_ext
@pytest.mark.parametrize("training", [True, False])
def test_cpu_functional_without_bias(training):
    """Conv3d(bias=False) stems: b_rgb / b_mot None, no bias gradients."""
    args = functional_args(bias=False)
    params = [a.requires_grad_() if a is not None else None for a in args[:8]] + args[8:]
    frames = make_frames(2, 2, 9, 10)
    outs = sme_stem(frames, *params, **KW, padding=(1, 1, 1), training=training, backend="cpu")
    refs = sme_stem_functional_reference(frames, *params, **KW, padding=(1, 1, 1), training=training)
    for o, r in zip(outs, refs):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(outs[0])
    grads = torch.autograd.grad((outs[0] * g).sum(), [p for p in params[:8] if p is not None])
    grads_ref = torch.autograd.grad((refs[0] * g).sum(), [p for p in params[:8] if p is not None])
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_ext
def test_cpu_is_automatic_choice_and_module_state_dict():
    assert _dispatch.resolve("sme_stem", None, torch.device("cpu")) == "cpu"
    m = SMEStem(16, 4, padding="aligned")
    assert m.padding == (1, 0, 0)
    ref = SMEStem(16, 4, padding="aligned", backend="reference")
    ref.load_state_dict(m.state_dict())
    frames = make_frames(1, 2, 8, 8)
    torch.testing.assert_close(m(frames), ref(frames), rtol=1e-4, atol=1e-4)
    assert set(m.state_dict()) == set(ref.state_dict())


# ---- Triton (interpreter on CPU tensors) -------------------------------------------------------

needs_triton = pytest.mark.skipif(not _dispatch.backend_available("sme_stem", "triton", "cpu")[0],
                                  reason="triton / TRITON_INTERPRET unavailable")

TRITON_CASES = [  # small: the interpreter is slow
    (1, 2, 9, 10, 4, 16, (1, 1, 1), torch.uint8, True),
    (2, 1, 8, 9, 4, 32, (1, 0, 0), torch.float32, False),
]


@needs_triton
@pytest.mark.parametrize("case", TRITON_CASES, ids=["u8-pub-train", "f32-aligned-eval"])
def test_triton_parity(case):
    B, T, H, W, P, d, padding, fdtype, train = case
    base = make_module(d, P, padding)
    check_module_parity("triton", base, make_frames(B, T, H, W, fdtype), torch.float32, train=train)


@needs_triton
def test_triton_fp16():
    base = make_module(16, 4, (1, 1, 1))
    check_module_parity("triton", base, make_frames(1, 2, 8, 8), torch.float16, train=True)


# ---- CUDA ------------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_parity(backend, dtype):
    for (B, T, H, W, P, d, padding) in [(2, 3, 33, 35, 16, 64, (1, 1, 1)), (1, 8, 30, 28, 14, 64, (1, 0, 0)),
                                        (2, 1, 13, 13, 4, 32, (1, 1, 1))]:
        base = make_module(d, P, padding)
        for train in (True, False):
            frames = make_frames(B, T, H, W, device="cuda")
            check_module_parity(backend, base, frames, dtype, train=train, device="cuda")
    frames = make_frames(2, 2, 16, 16, torch.float32, device="cuda")[:, :, :, :, :, 1:]
    check_module_parity(backend, make_module(32, 4), frames, dtype, train=True, device="cuda",
                        frames64=frames.to(torch.float64))


# ---- torch.library integration ----------------------------------------------------------------

def _op_args(device="cpu", training=True, bias=True, T=2, H=8, W=9, dtype=torch.float32):
    args = functional_args(bias=bias, dtype=dtype, device=device)
    for a in args[:8]:
        if a is not None:
            a.requires_grad_()
    frames = make_frames(1, T, H, W, device=device)
    return (frames, *args, list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD), 0.5, [1, 1, 1], training, 1e-5)


@needs_ext
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_cpp(training, bias, device):
    torch.library.opcheck(torch.ops.tds.sme_stem_forward.default, _op_args(device, training=training, bias=bias))
    args = _op_args(device, training=training, bias=bias)
    outs = torch.ops.tds.sme_stem_forward(*args)
    grad = torch.randn_like(outs[0])
    bwd_args = (grad, *[a.detach() if isinstance(a, torch.Tensor) else a for a in args[:9]],
                *outs[1:], *args[13:])
    torch.library.opcheck(torch.ops.tds.sme_stem_backward.default, bwd_args)


@needs_triton
def test_opcheck_triton():
    args = _op_args(T=1, H=4, W=4)
    torch.library.opcheck(torch.ops.tds_triton.sme_stem_forward.default, args,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@needs_ext
def test_compile_fullgraph():
    base = make_module(16, 4)
    eager = copy.deepcopy(base).train()
    eager.backend = "cpu"
    compiled_mod = copy.deepcopy(eager)
    compiled = torch.compile(compiled_mod, fullgraph=True, backend="aot_eager")
    frames = make_frames(2, 2, 9, 9)
    out_e, out_c = eager(frames), compiled(frames)
    torch.testing.assert_close(out_c, out_e)
    out_e.square().sum().backward()
    out_c.square().sum().backward()
    for (n, p), q in zip(eager.named_parameters(), compiled_mod.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=n)
    torch.testing.assert_close(compiled_mod.bn_mot.running_var, eager.bn_mot.running_var)


@needs_ext
def test_compile_inductor_functional():
    args = _op_args()

    def f(frames, *params):
        return sme_stem(frames, *params, **KW, padding=(1, 1, 1), training=True, backend="cpu")[0].sum()

    fn = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(fn(args[0], *args[1:13]), f(args[0], *args[1:13]))


@needs_ext
def test_checkpoint_non_reentrant():
    from torch.utils.checkpoint import checkpoint
    base = make_module(16, 4)
    a, b = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    a.backend = b.backend = "cpu"
    frames = make_frames(2, 3, 9, 9)
    out_a = a(frames)
    out_b = checkpoint(b, frames, use_reentrant=False)
    torch.testing.assert_close(out_b, out_a)
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q.grad, p.grad)


SAVING_BACKENDS = [pytest.param("cpu", marks=needs_ext), pytest.param("cuda", marks=needs_cuda),
                   pytest.param("triton", marks=needs_triton)]


def _saved_by_forward(m, frames):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = m(frames)
    return out, saved


@pytest.mark.parametrize("backend", SAVING_BACKENDS)
def test_saved_tensors_are_frames_params_stats_and_conv_outputs(backend):
    """Autograd keeps the frames as given (uint8), the parameters, the per-channel statistics and the two
    pre-BatchNorm conv outputs (tokens-sized, as eager keeps them; issue #11): nothing of the size of the
    normalised frames or the difference stack."""
    d, B, T, H, W = 16, 2, 2, 8, 8
    device = "cuda" if backend == "cuda" else "cpu"
    m = make_module(d, 4).train().to(device)
    m.backend = backend
    frames = make_frames(B, T, H, W, device=device)
    out, saved = _saved_by_forward(m, frames)
    out.sum().backward()
    param_shapes = {tuple(p.shape) for p in m.parameters()}
    assert any(t.dtype == torch.uint8 and t.data_ptr() == frames.data_ptr() for t in saved), "frames not saved as given"
    conv_outputs = [t for t in saved if t.dtype != torch.uint8 and tuple(t.shape) == tuple(out.shape)]
    assert len(conv_outputs) == 2, [tuple(t.shape) for t in saved]
    for t in saved:
        if t.dtype == torch.uint8:
            assert t.shape == frames.shape
        else:
            assert tuple(t.shape) in param_shapes | {tuple(out.shape)}, f"unexpected saved tensor {tuple(t.shape)}"
    # they are the bias-free conv outputs of the reference, in the tokens' dtype
    with torch.no_grad():
        ref = sme_stem_functional_reference(frames.cpu().double(), *[None if t is None else t.detach().cpu().double()
                                                                      for t in m.cpu()._flat_args()],
                                            list(m.mean), list(m.std), m.alpha, list(m.padding), True, m.bn_rgb.eps)
    for z, z_ref in zip(conv_outputs, ref[5:]):
        assert z.dtype == out.dtype
        torch.testing.assert_close(z.cpu().double(), z_ref, rtol=1e-4, atol=1e-4)
    float_bytes = sum(t.numel() * t.element_size() for t in saved if t.dtype != torch.uint8)
    assert float_bytes <= 4 * sum(p.numel() for p in m.parameters()) * 4 + 2 * out.numel() * out.element_size()
    assert len(saved) <= 15


@pytest.mark.parametrize("backend", SAVING_BACKENDS)
def test_eval_forward_keeps_no_conv_outputs(backend):
    """An eval forward fuses straight into the tokens and keeps no conv output; its backward recomputes."""
    device = "cuda" if backend == "cuda" else "cpu"
    m = make_module(16, 4).eval().to(device)
    m.backend = backend
    out, saved = _saved_by_forward(m, make_frames(1, 2, 8, 8, device=device))
    params = {tuple(p.shape) for p in m.parameters()}
    assert all(t.dtype == torch.uint8 or t.numel() == 0 or tuple(t.shape) in params for t in saved), [tuple(t.shape) for t in saved]
    out.sum().backward()
    assert torch.isfinite(m.conv_rgb.weight.grad).all()


# GEMM ops and the positions of their two matrix operands
_GEMMS = {"aten::mm": 0, "aten::bmm": 0, "aten::addmm": 1, "aten::addmm_": 1, "aten::baddbmm": 1}


def _gemm_flops(fn):
    """FLOPs of the GEMMs fn runs (the C++ kernels call ATen GEMMs through the dispatcher, so the profiler
    sees them), on one thread."""
    from torch.profiler import ProfilerActivity, profile

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every call on this thread, where the profiler records it
    try:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fn()
    finally:
        torch.set_num_threads(threads)
    flops = 0
    for e in prof.events():
        if e.name in _GEMMS:
            a, b = e.input_shapes[_GEMMS[e.name]:_GEMMS[e.name] + 2]
            flops += 2 * math.prod(a) * b[-1]
    return flops


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_ext), pytest.param("cuda", marks=needs_cuda)])
def test_backward_does_not_recompute_the_convolutions(backend):
    """Issue #11: the training backward reads the saved conv outputs, so its GEMMs are the weight
    gradient's only -- about the forward's conv FLOPs; recomputing Z would double them."""
    device = "cuda" if backend == "cuda" else "cpu"
    m = make_module(16, 4).train().to(device)
    m.backend = backend
    frames = make_frames(2, 3, 13, 13, device=device)
    box = {}
    fwd = _gemm_flops(lambda: box.setdefault("out", m(frames)))
    bwd = _gemm_flops(lambda: box["out"].square().sum().backward())
    assert fwd > 0 and bwd < 1.25 * fwd, (fwd, bwd)


@needs_triton
def test_triton_backward_does_not_recompute_the_convolutions(monkeypatch):
    from tds_kernels.ops.sme_stem import triton as tri

    calls = []
    conv = tri._conv
    monkeypatch.setattr(tri, "_conv", lambda *a, **k: calls.append(1) or conv(*a, **k))
    m = make_module(16, 4).train()
    m.backend = "triton"
    out = m(make_frames(1, 2, 8, 8))
    assert len(calls) == 1
    out.square().sum().backward()
    assert len(calls) == 1, "the backward recomputed the convolutions"


# ---- bad inputs ------------------------------------------------------------------------------

def _call(frames, args, backend="reference", **kw):
    opts = dict(KW, padding=(1, 1, 1), training=True)
    opts.update(kw)
    return sme_stem(frames, *args, **opts, backend=backend)


BACKENDS_HERE = ["reference"] + (["cpu"] if HAS_EXT else [])


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_bad_inputs(backend):
    args = functional_args()
    good = make_frames(1, 2, 8, 8)
    cases = [
        (good[0], args, {}, ValueError, "rank"),
        (make_frames(1, 2, 8, 8)[:, :, :4], args, {}, ValueError, "window"),
        (make_frames(1, 2, 8, 8)[:, :, :, :2], args, {}, ValueError, "colour"),
        (good.to(torch.int32), args, {}, TypeError, "frames must be"),
        (good[:0], args, {}, ValueError, "zero-size"),
        (make_frames(1, 2, 3, 8), args, {"padding": (1, 0, 0)}, ValueError, "smaller than"),
        (good, [args[0][:, :, :, :3]] + args[1:], {}, ValueError, "w_rgb"),
        (good, args[:2] + [args[2][:8]] + args[3:], {}, ValueError, "w_mot"),
        (good, args[:2] + [args[2].double()] + args[3:], {}, TypeError, "dtype"),
        (good, [args[0].int()] + args[1:], {}, TypeError, "w_rgb"),
        (good, args[:4] + [args[4][:5]] + args[5:], {}, ValueError, "gamma_rgb"),
        (good, args[:1] + [args[1].to("meta")] + args[2:], {}, ValueError, "b_rgb is on meta"),
        (good.to("meta"), args, {}, ValueError, "on cpu but frames are on meta"),
        (good, args, {"padding": (1, 1)}, ValueError, "padding"),
        (good, args, {"pixel_std": (0.2, 0.0, 0.3)}, ValueError, "pixel_std"),
        (make_frames(1, 1, 8, 8), args, {"padding": (0, 1, 1)}, ValueError, "temporal kernel"),
        (good, args, {"training": False, "backend_args": None}, None, None),
    ]
    for frames, a, kw, exc, match in cases:
        kw = dict(kw)
        if "backend_args" in kw:  # eval without running statistics
            kw.pop("backend_args")
            a = a[:8] + [None] * 4
            exc, match = ValueError, "running_mean_rgb is required"
        with pytest.raises(exc, match=match):
            _call(frames, a, backend=backend, **kw)
    with pytest.raises(ValueError, match="frames require grad"):
        _call(make_frames(1, 2, 8, 8, torch.float32).requires_grad_(), args, backend=backend)


@needs_ext
def test_cpp_op_rejects_bad_input_directly():
    """The C++ op validates too (TORCH_CHECK_VALUE / _TYPE -> ValueError / TypeError)."""
    args = list(_op_args())
    with pytest.raises(ValueError, match="window of 5"):
        torch.ops.tds.sme_stem_forward(args[0][:, :, :4], *args[1:])
    bad = list(args)
    bad[0] = args[0].to(torch.int16)
    with pytest.raises(TypeError, match="uint8"):
        torch.ops.tds.sme_stem_forward(*bad)
    bad = list(args)
    bad[3] = args[3][:, :, :2]
    with pytest.raises(ValueError, match="w_mot"):
        torch.ops.tds.sme_stem_forward(*bad)
    bad = list(args)
    bad[16] = [1, -1, 0]
    with pytest.raises(ValueError, match="padding"):
        torch.ops.tds.sme_stem_forward(*bad)


def test_module_rejects_bad_config():
    with pytest.raises(ValueError, match="padding"):
        SMEStem(16, 4, padding="nope")
    with pytest.raises(ValueError, match="frames"):
        SMEStem(16, 4)(torch.zeros(1, 2, 5, 3, 8))


@needs_ext
def test_fused_gradient_is_layout_independent_where_torch_cpu_batchnorm_is_not():
    """Documents the torch bug the helpers work around: with B == 1 the reference's gradients depend on
    the memory layout of the upstream gradient (channels_last_3d reaches BatchNorm3d's CPU backward);
    the fused op's do not, and they agree with a finite difference."""
    args = [a.double() for a in functional_args()]
    params = [a.requires_grad_() for a in args[:8]] + args[8:]
    frames = make_frames(1, 1, 13, 11)
    out = sme_stem(frames, *params, **KW, padding=(1, 0, 0), training=True, backend="cpu")[0]
    g = torch.randn_like(out)
    g_perm = g.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # same values, other layout
    a = torch.autograd.grad((out * g).sum(), params[0], retain_graph=True)[0]
    b = torch.autograd.grad((out * g_perm).sum(), params[0])[0]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    v = torch.randn_like(params[0])

    def loss(w):
        with torch.no_grad():
            o = sme_stem_functional_reference(frames, w, *params[1:], **KW, padding=(1, 0, 0), training=True)[0]
            return (o * g).sum()

    fd = (loss(params[0] + 1e-6 * v) - loss(params[0] - 1e-6 * v)) / 2e-6
    torch.testing.assert_close((a * v).sum(), fd, rtol=1e-6, atol=1e-6)


def test_forced_unavailable_backend_raises():
    if HAS_CUDA:
        pytest.skip("cuda is available here")
    with pytest.raises(RuntimeError, match="unavailable"):
        _call(make_frames(1, 2, 8, 8), functional_args(), backend="cuda")
