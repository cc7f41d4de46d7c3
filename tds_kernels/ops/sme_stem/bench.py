"""CPU benchmark of the SME stem at the SPEC's ViT-B/16 shapes (train mode, forward + backward of the
weights): fused C++ op vs the eager reference module vs torch.compile(reference module), plus the
bytes each one keeps for backward (measured with saved_tensors_hooks).

    python -m tds_kernels.ops.sme_stem.bench [--batch 8 --frames 8 --size 224 --dim 320 --patch 16]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from .module import SMEStem


def saved_bytes(module, frames) -> tuple[int, int]:
    """(bytes autograd keeps that alias the frames, all other saved bytes except the parameters themselves),
    deduplicated by storage."""
    seen, frame_bytes, other = set(), 0, 0
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}

    def pack(t):
        nonlocal frame_bytes, other
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            if t.untyped_storage().data_ptr() == frames.untyped_storage().data_ptr():
                frame_bytes += key[1]
            elif key[0] not in params:
                other += key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(frames)
    out.float().square().mean().backward()
    return frame_bytes, other


def time_step(module, frames, iters: int, warmup: int) -> dict:
    walls, cpus = [], []
    for i in range(warmup + iters):
        for p in module.parameters():
            p.grad = None
        w0, c0 = time.perf_counter(), time.process_time()
        out = module(frames)
        out.float().square().mean().backward()
        if i >= warmup:
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return {"wall_median": statistics.median(walls), "wall_min": min(walls), "cpu_median": statistics.median(cpus)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--dim", type=int, default=320)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=3, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=1, help="the variants run alternately this many times")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--variants", default="cpu,eager,compile")
    args = ap.parse_args()
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (args.batch, args.frames, 5, 3, args.size, args.size), dtype=torch.uint8)
    base = SMEStem(args.dim, args.patch).train()
    print(f"frames {tuple(frames.shape)} uint8, d={args.dim}, P={args.patch}, train mode, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    runs, results = {}, {}
    for name in args.variants.split(","):
        m = copy.deepcopy(base)
        m.backend = "cpu" if name == "cpu" else "reference"
        run = torch.compile(m) if name == "compile" else m
        if name == "compile":
            t0 = time.perf_counter()
            run(frames).float().square().mean().backward()
            print(f"  compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
        fb, ob = saved_bytes(run, frames)
        print(f"  {name:8s} saved for backward: frames {fb / 2**20:.1f} MiB + other {ob / 2**20:.1f} MiB "
              "(parameters excluded)")
        runs[name], results[name] = run, []
    for _ in range(args.rounds):
        for name, run in runs.items():
            results[name].append(time_step(run, frames, args.iters, args.warmup))
    for name, rs in results.items():
        wall = statistics.median(r["wall_median"] for r in rs)
        cpu = statistics.median(r["cpu_median"] for r in rs)
        print(f"  {name:8s} fwd+bwd wall median {wall:.3f} s (min {min(r['wall_min'] for r in rs):.3f}), "
              f"cpu median {cpu:.3f} s", flush=True)


if __name__ == "__main__":
    main()
