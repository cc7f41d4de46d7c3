"""Per-component forward + backward of the side network at the ViT-B/16 shapes (B = 2, T = 8, d = 320):
the fused / lean form against eager autograd of the same math, 1 thread, thread CPU time, best of R,
interleaved (issue #11; figures in bench/target_notes.md).

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/side_components.py conn,bnlin,mlp,tda,dw,block 3
"""
import sys, time, torch, torch.nn.functional as F
from torch import nn
torch.set_num_threads(1)
import tds_kernels
from tdsclip.model.side_network import SideConnection, SideBlock
from tdsclip.model.layers import TokenBatchNorm, pointwise, lean_batchnorm_linear
B, T, N, d, C = 2, 8, 196, 320, 768
R = int(sys.argv[2]) if len(sys.argv) > 2 else 5
which = sys.argv[1].split(",") if len(sys.argv) > 1 else ["conn", "bnlin", "mlp", "tda", "dw", "block"]
torch.manual_seed(0)

def best(fn, r=R):
    fn()
    ts = []
    for _ in range(r):
        t0 = time.thread_time(); fn(); ts.append(time.thread_time() - t0)
    return min(ts)

def report(name, fused, eager):
    tf, te = best(fused), best(eager)
    # interleave a second time
    tf2, te2 = best(fused), best(eager)
    tf, te = min(tf, tf2), min(te, te2)
    print(f"{name:28s} fused {tf*1e3:7.1f} ms  eager {te*1e3:7.1f} ms  eager/fused {te/tf:5.2f}", flush=True)

if "conn" in which:
    conn = SideConnection(C, d)
    x = torch.randn(B * T, N + 1, C)
    s = torch.randn(B, T, N, d, requires_grad=True)
    gs = torch.randn(B, T, N, d); gc = torch.randn(B, T, d)
    def run(lean):
        def f():
            if hasattr(conn, "mix"):
                s2, pc = conn.mix(s, x, lean=lean)
            else:
                p = conn(x, lean=lean).view(B, T, N + 1, d)
                s2, pc = 0.5 * s + 0.5 * p[:, :, 1:], p[:, :, 0]
            torch.autograd.backward([s2, pc], [gs, gc])
        return f
    report("side connection", run(True), run(False))
if "bnlin" in which:
    bn = TokenBatchNorm(d); lin = nn.Conv3d(d, d, 1)
    s = torch.randn(B, T, N, d, requires_grad=True); g = torch.randn(B, T, N, d)
    def f_lean():
        lean_batchnorm_linear(s, bn, lin.weight.flatten(1), lin.bias).backward(g)
    def f_eager():
        pointwise(bn(s), lin).backward(g)
    report("batchnorm-linear", f_lean, f_eager)
if "mlp" in which:
    bn = TokenBatchNorm(d); fc1 = nn.Linear(d, 4 * d); fc2 = nn.Linear(4 * d, d)
    s = torch.randn(B, T, N, d, requires_grad=True); g = torch.randn(B, T, N, d)
    from tds_kernels.lean import lean_batchnorm_linear as lbl, lean_gelu_linear as lgl
    def f_fused():
        tds_kernels.side_mlp(s, bn, fc1, fc2).backward(g)
    def f_fast():
        lgl(lbl(s, bn, fc1.weight, fc1.bias), fc2).backward(g)
    def f_eager():
        tds_kernels.side_mlp(s, bn, fc1, fc2, backend="reference").backward(g)
    report("mlp lean(bn_mlp)", f_fused, f_eager)
    report("mlp fast(lean fns)", f_fast, f_eager)
if "tda" in which:
    m = tds_kernels.TDAdapter(d)
    u = torch.randn(B, T, N, d, requires_grad=True); g = torch.randn(B, T, N, d)
    def run(backend):
        def f():
            m.backend = backend
            m(u).backward(g)
        return f
    report("td_adapter", run(None), run("reference"))
if "block" in which:
    blk = SideBlock(d)
    s = torch.randn(B, T, N, d, requires_grad=True); pc = torch.randn(B, T, d, requires_grad=True)
    pos = torch.randn(N, d, requires_grad=True); g = torch.randn(B, T, N, d)
    def run(backend):
        def f():
            blk.set_backend(backend)
            blk(s, pc, pos).backward(g)
        return f
    report("side block", run(None), run("reference"))
if "dw" in which:
    from tdsclip.model.layers import temporal_dwconv
    from tds_kernels.lean import lean_temporal_dwconv
    dw = nn.Conv3d(d, d, (3, 1, 1), padding=(1, 0, 0), groups=d)
    v = torch.randn(B, T, N, d, requires_grad=True); g = torch.randn(B, T, N, d)
    report("temporal dwconv", lambda: lean_temporal_dwconv(v, dw.weight, dw.bias).backward(g),
           lambda: temporal_dwconv(v, dw).backward(g))
