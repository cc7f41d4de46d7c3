"""Every fused op runs under autocast (bf16 on the CPU here): the registered Autocast pass-through
(tds_kernels/_autocast.py) keeps autocast from re-casting the matmuls inside the C++ kernels."""
import pytest
import torch

import tds_kernels as tk


@pytest.mark.skipif(not tk._ext.has_extension(), reason="needs the compiled extension")
def test_fused_modules_forward_and_backward_under_bf16_autocast():
    a = tk.TDAdapter(64, 16, backend="cpu").train()
    s = tk.SMEStem(64, 16, backend="cpu").train()
    u = torch.randn(2, 3, 5, 64, dtype=torch.bfloat16, requires_grad=True)
    frames = torch.randint(0, 256, (2, 3, 5, 3, 32, 32), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = a(u)
        z = s(frames)
        (y.float().square().mean() + z.float().square().mean()).backward()
    assert y.dtype == torch.bfloat16 and u.grad is not None and u.grad.dtype == torch.bfloat16
    for p in list(a.parameters()) + list(s.parameters()):
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()


def test_every_registered_op_has_an_autocast_kernel():
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.split("::")[0] in ("tds", "tds_triton")]
    assert names, "no tds ops registered"
    for n in names:
        ns, rest = n.split("::")
        op = getattr(getattr(torch.ops, ns), rest.split(".")[0]).default
        assert op.has_kernel_for_dispatch_key(torch._C.DispatchKey.AutocastCPU), n
