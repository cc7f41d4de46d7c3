"""The measurement behind "fuse the temporal adjacent difference with M2-CLIP's TED down-projection?"
(issue #15): the difference's share of (down-projection + difference) at the TED-Adapter's shape.
The op's own benchmark is bench/harness.py's TemporalAdjacentDiff (pytest bench/ --benchmark-only).

    python bench/adjacent_diff_fusion.py [--batch 1 --frames 8 --tokens 196 --width 768 --bottleneck 384 --rounds 5]

Times, interleaved round by round (medians): eager reference, the fused backend of the device, the
down-projection ``F.linear(z, W)`` (B, T, N, C) → (B, T, N, c) alone, and down-projection + fused
difference, forward + backward each. A fused GEMM-with-difference epilogue could at best save the
difference's own time (its read and write of the narrow tensor), so that share bounds what fusing pays.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tds_kernels import temporal_adjacent_diff
from tds_kernels.ops.temporal_adjacent_diff.reference import temporal_adjacent_diff_reference


def _time(fn, x, grad, sync) -> float:
    x.grad = None
    t0 = time.perf_counter()
    fn(x).backward(grad)
    sync()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=196)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--bottleneck", type=int, default=384)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    z = torch.randn(args.batch, args.frames, args.tokens, args.width, device=dev, requires_grad=True)
    w = torch.randn(args.bottleneck, args.width, device=dev, requires_grad=True)
    u = torch.randn(args.batch, args.frames, args.tokens, args.bottleneck, device=dev, requires_grad=True)
    variants = {
        "diff eager": (lambda t: temporal_adjacent_diff_reference(t), u),
        "diff fused": (lambda t: temporal_adjacent_diff(t), u),
        "down-projection": (lambda t: F.linear(t, w), z),
        "down-projection + diff fused": (lambda t: temporal_adjacent_diff(F.linear(t, w)), z),
    }
    times = {k: [] for k in variants}
    for r in range(args.rounds + 1):
        for name, (fn, x) in variants.items():
            t = _time(fn, x, torch.ones_like(fn(x)), sync)
            if r:  # round 0 warms up
                times[name].append(t)
    print(f"{dev.type}, {torch.get_num_threads()} threads: z {tuple(z.shape)} -> c={args.bottleneck}, fwd+bwd medians")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:30s} {v * 1e3:8.3f} ms")
    share = med["diff fused"] / med["down-projection + diff fused"]
    print(f"  difference share of projection + difference: {share:.1%} (the most a fused epilogue could save)")


if __name__ == "__main__":
    main()
