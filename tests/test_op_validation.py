"""Every backend accepts and rejects exactly the same inputs (issue #13 items 3 and 4).

One list of bad inputs (BAD below) is applied to every op of tds_kernels/ops/registry.py, starting from the
op's own small valid call (``validate.example()``), on every backend available here: the reference, the
C++ kernel and Triton under the interpreter (CUDA and Triton on CUDA tensors on a GPU machine). Each bad
input must raise the same exception type on every backend, with a message naming the op; the valid call
must run on every backend. For the BatchNorm rules the plain PyTorch definition (the op's reference.py,
called without the validation) must fail too: that is what "the reference rejects it" means.

The module-level dtype rules (a float64 / bfloat16 input on a float32 TDAdapter, float64 frames on a
float32 SMEStem) are checked the same way, on the modules.
"""
from __future__ import annotations

import copy

import pytest
import torch

import tds_kernels
from tds_kernels.ops.registry import OPS

from backends import op_backends

BN_OPS = ("td_adapter", "sme_stem", "bn_mlp")


def _backends(op):
    """(backend, device) pairs for op: the reference, then every fused backend op_backends lists."""
    return [pytest.param("reference", "cpu", id="reference")] + op_backends(op.forward_schema).backends


def _first_tensor(args: dict) -> str:
    return next(k for k, v in args.items() if isinstance(v, torch.Tensor))


def _second_tensor(args: dict) -> str | None:
    names = [k for k, v in args.items() if isinstance(v, torch.Tensor)]
    return names[1] if len(names) > 1 else None


def _to(args: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}


# (id, which ops, make(op_name) -> (args dict, expected exception type, message fragment))
def _not_a_tensor(name):
    a = _example(name)
    k = _first_tensor(a)
    a[k] = a[k].tolist()
    return a, TypeError, k


def _int_dtype(name):
    a = _example(name)
    k = _first_tensor(a)
    a[k] = a[k].to(torch.int32)
    return a, TypeError, k


def _wrong_rank(name):
    a = _example(name)
    k = _first_tensor(a)
    a[k] = a[k].reshape(-1)  # 1-D: below every op's rank
    return a, ValueError, k


def _zero_size(name):
    a = _example(name)
    k = _first_tensor(a)
    a[k] = a[k].narrow(1, 0, 0)
    return a, ValueError, "zero-size"


def _other_device(name):
    a = _example(name)
    k = _second_tensor(a)
    a[k] = a[k].to("meta")
    return a, ValueError, k


def _eps_zero(name):
    a = _example(name)
    a["eps"] = 0.0
    return a, ValueError, "eps"


def _one_value_per_channel(name):
    return _example(name, tiny=True), ValueError, "more than one value per channel"


def _running_stat_requires_grad(name):
    a = _example(name, training=False)
    k = next(k for k in a if k.startswith("running_"))
    a[k] = a[k].clone().requires_grad_(True)
    return a, ValueError, k


BAD = [
    ("not-a-tensor", None, _not_a_tensor),
    ("int-dtype", None, _int_dtype),
    ("wrong-rank", None, _wrong_rank),
    ("zero-size", None, _zero_size),
    ("param-on-other-device", BN_OPS, _other_device),  # the ops with more than one tensor
    ("eps-zero", BN_OPS, _eps_zero),
    ("training-one-value-per-channel", BN_OPS, _one_value_per_channel),
    ("eval-running-stat-requires-grad", BN_OPS, _running_stat_requires_grad),
]


def _example(name, training=True, tiny=False) -> dict:
    return tds_kernels.ops.registry.get(name).submodule("validate").example(training=training, tiny=tiny)


def _call(op, args: dict, backend: str):
    fn = getattr(op.load(), op.exports[0])  # the public function
    out = fn(**args, backend=backend)
    first = out[0] if isinstance(out, tuple) else out
    if first.requires_grad:
        first.float().sum().backward()
    return first


CASES = [pytest.param(op, case_id, make, id=f"{op.name}-{case_id}") for op in OPS for case_id, ops, make in BAD
         if ops is None or op.name in ops]


def test_every_op_has_an_example_and_every_bad_input_applies():
    for op in OPS:
        args = _example(op.name)
        assert _first_tensor(args), op.name
    assert {c.values[0].name for c in CASES} == {op.name for op in OPS}


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_the_example_runs_on_every_backend(op):
    for param in _backends(op):
        (backend, device), marks = param.values, param.marks
        if any(m.args and m.args[0] for m in marks if m.name == "skipif"):
            continue
        args = _to(_example(op.name), device)
        _call(op, args, backend)


@pytest.mark.parametrize("op,case_id,make", CASES)
def test_bad_input_is_rejected_alike_on_every_backend(op, case_id, make):
    ran = []
    for param in _backends(op):
        (backend, device), marks = param.values, param.marks
        if any(m.args and m.args[0] for m in marks if m.name == "skipif"):
            continue
        args, exc, fragment = make(op.name)
        if device != "cpu":
            args = {k: v.to(device) if isinstance(v, torch.Tensor) and v.device.type == "cpu" else v
                    for k, v in args.items()}
        with pytest.raises(exc) as info:
            _call(op, args, backend)
        msg = str(info.value)
        assert op.name in msg and fragment in msg, f"{backend}: {msg}"
        ran.append(backend)
    assert "reference" in ran and len(ran) >= 2, ran  # at least one fused backend ran here


@pytest.mark.parametrize("case_id,make", [(c, m) for c, ops, m in BAD
                                          if c in ("eps-zero", "training-one-value-per-channel",
                                                   "eval-running-stat-requires-grad")])
@pytest.mark.parametrize("name", BN_OPS)
def test_the_plain_definition_rejects_the_batchnorm_cases(name, case_id, make):
    """The validation rejects nothing the plain PyTorch definition accepts: F.batch_norm raises for these."""
    op = tds_kernels.ops.registry.get(name)
    args, _, _ = make(name)
    reference = {"td_adapter": "td_adapter_functional_reference", "sme_stem": "sme_stem_functional_reference",
                 "bn_mlp": "bn_mlp_reference"}[name]
    fn = getattr(op.submodule("reference"), reference)
    params = [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
              and not k.startswith("running_")]
    for k in params:
        args[k] = args[k].clone().requires_grad_(True)
    for k in ("pixel_mean", "pixel_std", "padding"):
        if k in args:
            args[k] = list(args[k])
    with pytest.raises((ValueError, RuntimeError)):
        out = fn(**args)
        out[0].float().sum().backward()


# ---- module dtype rules (issue #13 item 4) ----------------------------------------------------------------

def _module_backends(schema):
    return [pytest.param("reference", id="reference")] + op_backends(schema).fused


@pytest.mark.parametrize("backend", _module_backends("td_adapter_forward"))
def test_td_adapter_module_dtypes_agree(backend):
    m = tds_kernels.TDAdapter(16, 4, backend=backend).train()
    u = torch.randn(2, 3, 5, 16)
    with pytest.raises(TypeError, match="TDAdapter: u has dtype torch.float64"):
        m(u.double())
    for dtype in (torch.float32, torch.bfloat16):  # the module's dtype, or 16-bit on float32 (mixed precision)
        out = m(u.to(dtype))
        assert out.dtype == dtype and torch.isfinite(out.float()).all()
    m64 = copy.deepcopy(m).double()
    with pytest.raises(TypeError, match="TDAdapter: u has dtype torch.float32"):
        m64(u)
    if backend != "triton":  # the Triton kernels compute in float32 only
        assert m64(u.double()).dtype == torch.float64


@pytest.mark.parametrize("backend", _module_backends("sme_stem_forward"))
def test_sme_stem_module_dtypes_agree(backend):
    m = tds_kernels.SMEStem(8, 4, padding=(1, 0, 0), backend=backend).train()
    frames = torch.randint(0, 256, (1, 2, 5, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(TypeError, match="frames have dtype torch.float64, wider than"):
        m(frames.double())
    for dtype in (torch.uint8, torch.float32, torch.bfloat16):
        out = m(frames.to(dtype))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    if backend != "triton":  # the Triton stem computes in float32 only
        m64 = copy.deepcopy(m).double()
        assert m64(frames.double()).dtype == torch.float64


@pytest.mark.parametrize("backend", _module_backends("td_adapter_forward"))
def test_td_adapter_module_rejects_running_buffers_that_require_grad(backend):
    m = tds_kernels.TDAdapter(16, 4, backend=backend).eval()
    m.bn1.running_mean.requires_grad_(True)
    with pytest.raises(ValueError, match="running_mean1 requires grad"):
        m(torch.randn(2, 3, 5, 16, requires_grad=True))
