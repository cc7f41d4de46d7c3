"""Forward and backward time of the SME stem at the model's shape: the fused op vs eager PyTorch.

Issue #11 asks every fused op's backward to be at least as fast as eager's backward of the same math at
the model's shapes. This times, interleaved in one process (best of ``--rounds``, process CPU time, so
other load on a shared machine counts less), the SMEStem module on a fused backend and the plain
reference layers (Conv3d + BatchNorm3d in autograd), forward and backward separately, in training mode.

    OMP_NUM_THREADS=1 python bench/sme_stem_fwd_bwd.py --backend cpu --clips 2 --segments 8
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import tds_kernels


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn):
    """fn's result, process CPU seconds and wall seconds."""
    _sync()
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    _sync()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cpu", help="fused backend to time against eager (cpu, cuda, triton)")
    p.add_argument("--clips", type=int, default=2, help="B (clips)")
    p.add_argument("--segments", type=int, default=8, help="T (segments)")
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--dim", type=int, default=320, help="side width d")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    base = tds_kernels.SMEStem(args.dim, args.patch).to(args.device).train()
    mods = {"eager": copy.deepcopy(base), "fused": copy.deepcopy(base)}
    mods["eager"].backend, mods["fused"].backend = "reference", args.backend
    frames = torch.randint(0, 256, (args.clips, args.segments, 5, 3, args.image, args.image), dtype=torch.uint8,
                           device=args.device)
    grad = None  # one upstream gradient for every round and variant
    best = {(k, ph): (float("inf"), float("inf")) for k in mods for ph in ("fwd", "bwd")}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, mod in mods.items():
            for q in mod.parameters():
                q.grad = None
            out, c_f, w_f = _timed(lambda: mod(frames))
            grad = torch.randn_like(out) if grad is None else grad
            _, c_b, w_b = _timed(lambda: out.backward(grad))
            if r:
                for ph, (c, w) in (("fwd", (c_f, w_f)), ("bwd", (c_b, w_b))):
                    bc, bw = best[(name, ph)]
                    best[(name, ph)] = (min(bc, c), min(bw, w))
    print(f"SME stem B={args.clips} T={args.segments} {args.image}px P={args.patch} d={args.dim} "
          f"threads={torch.get_num_threads()} backend={args.backend}, best of {args.rounds} (process CPU s / wall s)")
    for ph in ("fwd", "bwd"):
        (ce, we), (cf, wf) = best[("eager", ph)], best[("fused", ph)]
        print(f"  {ph}: eager {ce:.3f} / {we:.3f}   fused {cf:.3f} / {wf:.3f}   eager/fused (CPU) {ce / cf:.2f}x")
    tot = {k: sum(best[(k, ph)][0] for ph in ("fwd", "bwd")) for k in mods}
    print(f"  fwd+bwd: eager {tot['eager']:.3f}  fused {tot['fused']:.3f}  eager/fused {tot['eager'] / tot['fused']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
