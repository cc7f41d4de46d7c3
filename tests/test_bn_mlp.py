"""tds_kernels.bn_mlp (the side block's BN → Linear → GELU → Linear, issue #5) on every backend against
its fp64 reference: output, batch statistics and every gradient.

Backends: "cpu" (the C++ kernel, when the extension is built), "triton" (under TRITON_INTERPRET=1 on
CPU tensors, so small shapes), and on a GPU machine "cuda" and "triton" on CUDA tensors. Outputs are
NaN-poisoned at allocation (conftest), so an unwritten element fails parity.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tds_kernels.ops.bn_mlp.triton as bn_triton
from tds_kernels.ops.bn_mlp import bn_mlp, bn_mlp_modules, bn_mlp_reference
from tds_kernels.ops.bn_mlp import op as bn_op

from backends import op_backends
from parity import assert_parity

HAS_CPU, HAS_CUDA, NEED_CPU, NEED_GPU, BACKENDS, FUSED = op_backends("bn_mlp_forward")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (leading dims of x, d, H, O, bias): T = 1 and 2, batch 1, odd sizes, O != d.
FULL_SHAPES = [((1, 1, 7), 64, 256, 64, True), ((1, 2, 5), 48, 96, 48, False), ((2, 8, 9), 64, 256, 64, True),
               ((3, 3, 11), 33, 70, 17, True), ((1, 16, 4), 320, 1280, 320, True), ((37,), 20, 50, 20, False)]
SMALL_SHAPES = [((1, 1, 7), 16, 64, 16, True), ((1, 2, 5), 12, 20, 12, False), ((2, 3, 5), 33, 40, 7, True)]


def _shapes(backend, device):
    return FULL_SHAPES if (backend, device) != ("triton", "cpu") else SMALL_SHAPES


def make_case(lead, d, H, O, bias, device, dtype, x_dtype=None):
    """Inputs of one case; BN parameters and running statistics in float32 (as in the model)."""
    x = torch.randn(*lead, d, device=device).mul(1.5).add(0.3).to(x_dtype or dtype)
    p = {
        "bn_weight": torch.rand(d, device=device) + 0.5,
        "bn_bias": torch.randn(d, device=device) * 0.1,
        "running_mean": torch.randn(d, device=device) * 0.2,
        "running_var": torch.rand(d, device=device) + 0.5,
        "w1": (torch.randn(H, d, device=device) * d ** -0.5).to(dtype),
        "b1": (torch.randn(H, device=device) * 0.1).to(dtype) if bias else None,
        "w2": (torch.randn(O, H, device=device) * H ** -0.5).to(dtype),
        "b2": (torch.randn(O, device=device) * 0.1).to(dtype) if bias else None,
    }
    g = torch.randn(*lead, O, device=device).to(dtype)
    return x, p, g


GRAD_NAMES = ("x", "bn_weight", "bn_bias", "w1", "b1", "w2", "b2")


def run(x, p, g, training, backend, cast=None):
    """(out, mean, var, {name: grad}) of the public op (backend None: the reference), inputs cast to `cast`."""
    def c(t):
        if t is None:
            return None
        return t.detach().to(cast) if cast is not None else t.detach()

    leaves = {"x": c(x).requires_grad_()}
    for k in GRAD_NAMES[1:]:
        if p[k] is not None:
            leaves[k] = c(p[k]).requires_grad_()
    args = (leaves["x"], leaves["bn_weight"], leaves["bn_bias"], c(p["running_mean"]), c(p["running_var"]),
            leaves["w1"], leaves.get("b1"), leaves["w2"], leaves.get("b2"))
    if backend is None:
        out, mean, var = bn_mlp_reference(*args, training, 1e-5)
    else:
        out, mean, var = bn_mlp(*args, training=training, eps=1e-5, backend=backend)
    out.backward(c(g))
    return out.detach(), mean, var, {k: t.grad for k, t in leaves.items()}


def check_parity(x, p, g, training, backend, name):
    out, mean, var, grads = run(x, p, g, training, backend)
    out_p, mean_p, var_p, grads_p = run(x, p, g, training, None)
    out_64, mean_64, var_64, grads_64 = run(x, p, g, training, None, cast=torch.float64)
    dtype = p["w1"].dtype
    assert out.dtype == dtype and out.shape == x.shape[:-1] + (p["w2"].shape[0],)
    errs = {"out": assert_parity(out, out_p, out_64, f"{name} out", dtype=dtype)}
    for k in grads:
        assert grads[k].dtype == grads_p[k].dtype, f"{name} d{k}: dtype {grads[k].dtype} != {grads_p[k].dtype}"
        # tolerance of the compute dtype: every gradient flows through the GEMMs in w1's dtype
        errs[k] = assert_parity(grads[k], grads_p[k], grads_64[k], f"{name} d{k}", dtype=dtype)
    torch.testing.assert_close(mean, mean_64.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var, var_64.float(), rtol=1e-4, atol=1e-5)
    return errs


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_parity(backend, device, dtype, training):
    worst = {}
    for lead, d, H, O, bias in _shapes(backend, device):
        x, p, g = make_case(lead, d, H, O, bias, device, dtype)
        errs = check_parity(x, p, g, training, backend, f"{backend}/{dtype} {lead}x{d} H={H} O={O} bias={bias}")
        worst = {k: max(worst.get(k, 0.0), v) for k, v in errs.items()}
    print(f"{backend}/{device}/{dtype}/train={training}: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_float32_tokens_with_16bit_weights(backend, device):
    """The autocast case: the residual stream x stays float32, the linear layers run in bfloat16."""
    for lead, d, H, O, bias in _shapes(backend, device)[:3]:
        x, p, g = make_case(lead, d, H, O, bias, device, torch.bfloat16, x_dtype=torch.float32)
        out, _, _, grads = run(x, p, g, True, backend)
        out_p, _, _, grads_p = run(x, p, g, True, None)
        out_64, _, _, grads_64 = run(x, p, g, True, None, cast=torch.float64)
        assert out.dtype == torch.bfloat16 and grads["x"].dtype == torch.float32
        assert_parity(out, out_p, out_64, "mixed out", dtype=torch.bfloat16)
        for k in grads:
            assert_parity(grads[k], grads_p[k], grads_64[k], f"mixed d{k}", dtype=torch.bfloat16)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_float64_matches_reference(backend, device, training):
    """In fp64 the fused kernels do the reference's arithmetic (libm erf/exp): agreement to rounding."""
    for lead, d, H, O, bias in _shapes(backend, device)[:4]:
        x, p, g = make_case(lead, d, H, O, bias, device, torch.float64, x_dtype=torch.float64)
        p = {k: (v.double() if v is not None else None) for k, v in p.items()}
        out, mean, var, grads = run(x, p, g, training, backend)
        out_r, mean_r, var_r, grads_r = run(x, p, g, training, None)
        torch.testing.assert_close(out, out_r, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(mean, mean_r, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var, var_r, rtol=1e-12, atol=1e-12)
        for k in grads:
            torch.testing.assert_close(grads[k], grads_r[k], rtol=1e-9, atol=1e-9, msg=lambda m: f"d{k}: {m}")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_several_chunks(backend, device, monkeypatch):
    """More rows than one chunk of hidden activations: the chunk loop and the cross-chunk sums."""
    if backend == "triton":
        monkeypatch.setattr(bn_triton, "CHUNK_ELEMS", 40 * 64)  # 40 rows per chunk
        lead, d, H = (2, 3, 17), 16, 64
    else:  # the C++ kernels use 4M (CPU) / 16M (CUDA) hidden elements per chunk
        lead, d, H = ((1, 4, 4100), 64, 256) if backend == "cpu" else ((2, 4, 8200), 64, 512)
    x, p, g = make_case(lead, d, H, d, True, device, torch.float32)
    check_parity(x, p, g, True, backend, f"{backend} chunks")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_x(backend, device):
    base = torch.randn(2, 5, 3, 41, device=device)
    views = {"transposed": base[..., :16].transpose(1, 2), "channel slice": base[..., 3:19],
             "expanded": torch.randn(1, 3, 5, 16, device=device).expand(2, 3, 5, 16)}
    _, p, _ = make_case((1,), 16, 32, 16, True, device, torch.float32)
    for name, x in views.items():
        assert not x.is_contiguous()
        g = torch.randn(*x.shape[:-1], 16, device=device)
        check_parity(x, p, g, True, backend, f"{backend} {name}")


@pytest.mark.parametrize("backend", FUSED)
def test_saves_only_x_and_statistics(backend):
    x, p, g = make_case((2, 4, 9), 32, 128, 32, True, "cpu", torch.float32)
    x.requires_grad_()
    params = {k: v.requires_grad_() for k, v in p.items() if v is not None and k not in ("running_mean", "running_var")}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out, mean, var = bn_mlp(x, p["bn_weight"], p["bn_bias"], None, None, p["w1"], p["b1"], p["w2"], p["b2"],
                                training=True, backend=backend)
    param_ptrs = {t.data_ptr() for t in params.values()}
    activations = [t for t in saved if t is not None and t.data_ptr() not in param_ptrs]
    assert x.data_ptr() in {t.data_ptr() for t in activations}, "x itself is not saved"
    others = [t for t in activations if t.data_ptr() != x.data_ptr()]
    assert all(t.numel() == 32 for t in others), f"saved more than x and the statistics: {[t.shape for t in others]}"
    out.backward(g)
    assert x.grad is not None and all(t.grad is not None for t in params.values())


def test_reference_saves_the_hidden_activations():
    """The saved-tensors check above can fail: plain autograd keeps the H-wide tensors."""
    x, p, _ = make_case((2, 4, 9), 32, 128, 32, True, "cpu", torch.float32)
    x.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        bn_mlp(x, p["bn_weight"], p["bn_bias"], None, None, p["w1"].requires_grad_(), p["b1"], p["w2"], p["b2"],
               backend="reference")
    assert any(t.shape[-1] == 128 and t.numel() == 2 * 4 * 9 * 128 for t in saved)


@pytest.mark.parametrize("backend", FUSED)
def test_double_backward_raises(backend):
    x, p, _ = make_case((1, 2, 3), 8, 16, 8, True, "cpu", torch.float32)
    x.requires_grad_()
    out, _, _ = bn_mlp(x, p["bn_weight"], p["bn_bias"], None, None, p["w1"], p["b1"], p["w2"], p["b2"],
                       backend=backend)
    (dx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not implemented"):
        dx.sum().backward()


# ---- module glue ---------------------------------------------------------------------------------

class TokenBN(nn.BatchNorm1d):
    """BatchNorm over the last dim of (..., d) tokens (what the model's TokenBatchNorm is)."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def _modules(d=16, H=64, momentum=0.1):
    torch.manual_seed(1)
    norm = TokenBN(d, momentum=momentum)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.1)
    return norm, nn.Linear(d, H), nn.Linear(H, d)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_modules_match_plain_layers(backend, momentum):
    """Same output, gradients, running statistics and state_dict as fc2(gelu(fc1(norm(x))))."""
    plain = _modules(momentum=momentum)
    fused = copy.deepcopy(plain)
    x = torch.randn(2, 3, 5, 16)
    for step in range(2):
        outs = []
        for mods, b in ((plain, "reference"), (fused, backend)):
            xi = x.clone().requires_grad_()
            y = bn_mlp_modules(xi, *mods, backend=b)
            y.backward(torch.ones_like(y))
            outs.append((y.detach(), xi.grad, [q.grad.clone() for m in mods for q in m.parameters()]))
            for m in mods:
                m.zero_grad()
        torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-4, atol=1e-5)
        for a, b in zip(outs[1][2], outs[0][2]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    sd_plain, sd_fused = plain[0].state_dict(), fused[0].state_dict()
    assert sd_plain.keys() == sd_fused.keys()
    for k in sd_plain:
        torch.testing.assert_close(sd_fused[k], sd_plain[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")
    # eval mode: the running statistics, no update
    for mods in (plain, fused):
        mods[0].eval()
    before = fused[0].running_mean.clone()
    y_plain = bn_mlp_modules(x, *plain, backend="reference")
    y_fused = bn_mlp_modules(x, *fused, backend=backend)
    torch.testing.assert_close(y_fused, y_plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(fused[0].running_mean, before)


@pytest.mark.parametrize("backend", FUSED)
def test_modules_under_autocast(backend):
    """bf16 autocast on CPU: the linear layers run in bf16 as nn.Linear would; x stays float32."""
    plain = _modules()
    fused = copy.deepcopy(plain)
    x = torch.randn(2, 3, 5, 16)
    res = []
    for mods, b in ((plain, "reference"), (fused, backend)):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = bn_mlp_modules(xi, *mods, backend=b)
        assert y.dtype == torch.bfloat16
        y.float().sum().backward()
        res.append((y.float(), xi.grad, mods[1].weight.grad))
    torch.testing.assert_close(res[1][0], res[0][0], rtol=0.05, atol=0.05)
    torch.testing.assert_close(res[1][1], res[0][1], rtol=0.05, atol=0.05)
    torch.testing.assert_close(res[1][2], res[0][2], rtol=0.05, atol=0.1)


@pytest.mark.parametrize("backend", FUSED)
def test_functional_op_ignores_autocast(backend):
    """The op computes in its weights' dtype: autocast must not re-cast the GEMMs inside the kernels."""
    x, p, g = make_case((2, 3, 5), 16, 64, 16, True, "cpu", torch.float32)
    args = (x, p["bn_weight"], p["bn_bias"], None, None, p["w1"], p["b1"], p["w2"], p["b2"])
    out, mean, var = bn_mlp(*args, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ac, mean_ac, var_ac = bn_mlp(*args, backend=backend)
    assert out_ac.dtype == torch.float32
    torch.testing.assert_close(out_ac, out, rtol=0, atol=0)
    torch.testing.assert_close(var_ac, var, rtol=0, atol=0)


# ---- torch.library / compile / checkpoint --------------------------------------------------------

def _opcheck_args(requires_grad=True):
    x, p, _ = make_case((2, 2, 3), 8, 16, 8, True, "cpu", torch.float32)
    if requires_grad:
        x.requires_grad_()
        for k in ("bn_weight", "bn_bias", "w1", "b1", "w2", "b2"):
            p[k].requires_grad_()
    return (x.view(-1, 8), p["bn_weight"], p["bn_bias"], p["running_mean"], p["running_var"], p["w1"], p["b1"],
            p["w2"], p["b2"])


def _backward_args(training):
    fwd = _opcheck_args(False)
    x, bw, bb, rm, rv, w1, b1, w2, b2 = fwd
    _, mean, var = bn_mlp_reference(*fwd, training, 1e-5)
    return (torch.randn(12, 8), x, bw, bb, w1, b1, w2, b2, mean.float(), var.float(), training, 1e-5)


@NEED_CPU
@pytest.mark.parametrize("training", [True, False])
def test_opcheck_tds_ops(training):
    torch.library.opcheck(torch.ops.tds.bn_mlp_forward.default, (*_opcheck_args(), training, 1e-5))
    torch.library.opcheck(torch.ops.tds.bn_mlp_backward.default, _backward_args(training))


@pytest.mark.parametrize("training", [True, False])
def test_opcheck_triton_ops(training):
    torch.library.opcheck(bn_op.triton_forward, (*_opcheck_args(), training, 1e-5))
    torch.library.opcheck(bn_op.triton_backward, _backward_args(training))


COMPILE_BACKENDS = [pytest.param("cpu", marks=NEED_CPU), "triton", "reference"]


def _grads(f, x, params):
    x = x.detach().requires_grad_()
    y = f(x)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad, [q.grad.clone() for q in params]


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    _, p, _ = make_case((1,), 8, 16, 8, True, "cpu", torch.float32)
    params = [p[k].requires_grad_() for k in ("bn_weight", "bn_bias", "w1", "b1", "w2", "b2")]

    def f(x):
        out, _, _ = bn_mlp(x * 2.0, p["bn_weight"], p["bn_bias"], None, None, p["w1"], p["b1"], p["w2"], p["b2"],
                           training=True, backend=backend)
        return out.sin()

    x = torch.randn(2, 3, 5, 8)
    y, dx, gp = _grads(f, x, params)
    for q in params:
        q.grad = None
    y_c, dx_c, gp_c = _grads(torch.compile(f, fullgraph=True), x, params)
    torch.testing.assert_close(y_c, y)
    torch.testing.assert_close(dx_c, dx)
    for a, b in zip(gp_c, gp):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_checkpoint(backend):
    _, p, _ = make_case((1,), 8, 16, 8, True, "cpu", torch.float32)
    params = [p[k].requires_grad_() for k in ("bn_weight", "bn_bias", "w1", "b1", "w2", "b2")]

    def f(x):
        return bn_mlp(x.exp(), p["bn_weight"], p["bn_bias"], None, None, p["w1"], p["b1"], p["w2"], p["b2"],
                      training=True, backend=backend)[0]

    x = torch.randn(2, 3, 5, 8)
    y, dx, gp = _grads(f, x, params)
    for q in params:
        q.grad = None
    y_ck, dx_ck, gp_ck = _grads(lambda t: torch.utils.checkpoint.checkpoint(f, t, use_reentrant=False), x, params)
    torch.testing.assert_close(y_ck, y, rtol=0, atol=0)
    torch.testing.assert_close(dx_ck, dx, rtol=0, atol=0)
    for a, b in zip(gp_ck, gp):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_reference_is_the_plain_layers():
    """The functional reference equals fc2(gelu(fc1(BatchNorm(x)))) written with the modules."""
    norm, fc1, fc2 = (m.double() for m in _modules())
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    out, mean, var = bn_mlp_reference(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, fc1.weight,
                                      fc1.bias, fc2.weight, fc2.bias, True, norm.eps)
    torch.testing.assert_close(out, fc2(F.gelu(fc1(norm(x)))))
    torch.testing.assert_close(mean, x.reshape(-1, 16).mean(0))
    torch.testing.assert_close(var, x.reshape(-1, 16).var(0, unbiased=False))


# ---- bad input -----------------------------------------------------------------------------------

def _good(**over):
    _, p, _ = make_case((1,), 8, 16, 8, True, "cpu", torch.float32)
    kw = dict(x=torch.randn(2, 3, 8), bn_weight=p["bn_weight"], bn_bias=p["bn_bias"], running_mean=p["running_mean"],
              running_var=p["running_var"], w1=p["w1"], b1=p["b1"], w2=p["w2"], b2=p["b2"], training=True, eps=1e-5)
    kw.update(over)
    return kw


BAD_INPUTS = [
    (dict(x=torch.randn(8)), ValueError, "at least 2 dims"),
    (dict(x=torch.randn(2, 3, 9)), ValueError, "w1 must be"),
    (dict(x=torch.randn(0, 3, 8)), ValueError, "zero-size"),
    (dict(x=torch.randn(2, 0, 8)), ValueError, "zero-size"),
    (dict(x=torch.ones(2, 3, 8, dtype=torch.int64)), TypeError, "x has dtype"),
    (dict(x=torch.randn(2, 3, 8).half()), TypeError, "x has dtype"),
    (dict(x=torch.randn(2, 3, 8).numpy()), TypeError, "torch.Tensor"),
    (dict(w1=torch.randn(16, 7)), ValueError, "w1 must be"),
    (dict(w1=torch.randn(16)), ValueError, "w1 must be"),
    (dict(w2=torch.randn(8, 15)), ValueError, "w2 must be"),
    (dict(w2=torch.randn(8, 16).double()), TypeError, "w2 has dtype"),
    (dict(w1=torch.randn(16, 8).int()), TypeError, "w1 has dtype"),
    (dict(b1=torch.randn(15)), ValueError, "b1 must have shape"),
    (dict(b2=torch.randn(8).half()), TypeError, "b2 has dtype"),
    (dict(bn_weight=torch.randn(7)), ValueError, "bn_weight must have shape"),
    (dict(bn_bias=torch.randn(8, 1)), ValueError, "bn_bias must have shape"),
    (dict(bn_weight=torch.ones(8, dtype=torch.int32)), TypeError, "bn_weight has dtype"),
    (dict(training=False, running_mean=None), TypeError, "running_mean must be a torch.Tensor"),
    (dict(training=False, running_var=torch.ones(9)), ValueError, "running_var must have shape"),
    (dict(training=1), TypeError, "training must be a bool"),
    (dict(eps=0.0), ValueError, "eps must be a positive"),
    (dict(eps=-1e-5), ValueError, "eps must be a positive"),
    (dict(w1=torch.randn(16, 8, device="meta")), ValueError, "w1 is on meta"),
    (dict(bn_bias=torch.randn(8, device="meta")), ValueError, "bn_bias is on meta"),
]


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=NEED_CPU), "triton"])
@pytest.mark.parametrize("over,exc,match", BAD_INPUTS)
def test_bad_input(backend, over, exc, match):
    kw = _good(**over)
    with pytest.raises(exc, match=match):
        bn_mlp(kw.pop("x"), *(kw.pop(k) for k in ("bn_weight", "bn_bias", "running_mean", "running_var", "w1", "b1",
                                                  "w2", "b2")), backend=backend, **kw)


@NEED_CPU
def test_extension_op_checks_its_arguments():
    """Direct calls of the tds:: ops (bypassing the Python checks) fail cleanly, not with a crash."""
    args = list(_opcheck_args(False))
    with pytest.raises(RuntimeError, match="x must be \\(M, d\\)"):
        torch.ops.tds.bn_mlp_forward(args[0].view(-1), *args[1:], True, 1e-5)
    with pytest.raises(RuntimeError, match="w1 must be"):
        torch.ops.tds.bn_mlp_forward(args[0], *args[1:5], torch.randn(16, 7), *args[6:], True, 1e-5)
    with pytest.raises(RuntimeError, match="running_mean must have shape"):
        torch.ops.tds.bn_mlp_forward(*args[:3], torch.ones(0), torch.ones(0), *args[5:], False, 1e-5)
    bargs = list(_backward_args(True))
    with pytest.raises(RuntimeError, match="grad_out must be"):
        torch.ops.tds.bn_mlp_backward(torch.randn(12, 9), *bargs[1:])


@NEED_GPU
def test_cuda_device_mismatch_rejected():
    args = list(_opcheck_args(False))
    with pytest.raises(RuntimeError, match="device"):
        torch.ops.tds.bn_mlp_forward(args[0].cuda(), *args[1:], True, 1e-5)
