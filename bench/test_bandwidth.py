"""The device's measured copy bandwidth (dst.copy_(src) of a large buffer; 2 bytes moved per byte
copied), taken in the same run as the op benchmarks so that make_results.py can state each
memory-bound op's GB/s as a fraction of it."""
from __future__ import annotations

import torch

import harness


def test_copy_bandwidth(benchmark, settings):
    nbytes = (1 << 28 if settings.quick else 1 << 30) if settings.cuda else (1 << 24 if settings.quick else 1 << 28)
    src = torch.empty(nbytes, dtype=torch.uint8, device=settings.device).random_(0, 255)
    dst = torch.empty_like(src)

    def run():
        dst.copy_(src)

    benchmark.group = "copy bandwidth"
    harness.run_timed(benchmark, settings, run, warmup=2, extra_info=dict(
        kind="copy", device=settings.device, bytes=2 * nbytes))
    assert torch.equal(dst[:4096], src[:4096])
