"""Do DiST's fusion candidates pay? Eager vs ``torch.compile`` of each, forward + backward, at
DiST's shapes (docs/dist.md "Fused ops").

    python -m tdsclip.dist.opbench [--batch 1] [--frames 8] [--gamma 2] [--grid 14] [--reps 20] [--device cpu]

Candidates (B/16: βC = 96, αC = 384, N = grid²):
* ``t_block_temporal``: the T-Block's LN → k×1×1 conv → QuickGELU on Z (B, βC, γT, h, w);
* ``phi``: Φ = drop CLS, Linear αC → βC, nearest upsampling T → γT, added to Z;
* ``psi``: Ψ = strided temporal conv (kernel = stride = γ, βC → αC) + class token, added to Y;
* ``integration_tconv``: the I-Block's LN → FC → k×1×1 conv → QuickGELU → FC.

Timings are medians of interleaved repetitions (eager, compiled, eager, ...) in one run; the
ratio compiled / eager is what is reported.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from .config import DiSTConfig
from .integration import IntegrationFFN, IntegrationToTemporal, TemporalToIntegration
from .temporal import TBlock


class TBlockTemporal(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.block = TBlock(dim)

    def forward(self, z):
        b = self.block
        return b.act(b.temporal(b.norm(z)))


class PhiAdd(nn.Module):
    def __init__(self, dim, temporal_dim, gamma, grid):
        super().__init__()
        self.phi = IntegrationToTemporal(dim, temporal_dim, gamma, (grid, grid))

    def forward(self, z, y):
        return z + self.phi(y)


class PsiAdd(nn.Module):
    def __init__(self, temporal_dim, dim, gamma, frames):
        super().__init__()
        self.psi = TemporalToIntegration(temporal_dim, dim, gamma, frames)

    def forward(self, z, y):
        return y + self.psi(z)


class IntegrationTConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.ffn = IntegrationFFN(dim)

    def forward(self, y):
        f = self.ffn
        return f.t_out(f.act(f.temporal_conv(f.t_in(f.norm_t(y)))))


def cases(batch, frames, gamma, grid, device):
    cfg = DiSTConfig()
    tdim, dim = cfg.widths(768)
    n = grid * grid

    def z():
        return torch.randn(batch, tdim, gamma * frames, grid, grid, device=device, requires_grad=True)

    def y():
        return torch.randn(batch, frames, n + 1, dim, device=device, requires_grad=True)

    return {
        "t_block_temporal": (TBlockTemporal(tdim), lambda: (z(),)),
        "phi": (PhiAdd(dim, tdim, gamma, grid), lambda: (z(), y())),
        "psi": (PsiAdd(tdim, dim, gamma, frames), lambda: (z(), y())),
        "integration_tconv": (IntegrationTConv(dim), lambda: (y(),)),
    }


def step(fn, inputs):
    out = fn(*inputs)
    out.backward(torch.ones_like(out))


def time_once(fn, inputs, device):
    if device != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    step(fn, inputs)
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tdsclip.dist.opbench", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--gamma", type=int, default=2)
    p.add_argument("--grid", type=int, default=14)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    print(f"device {args.device}, B={args.batch}, T={args.frames}, gamma={args.gamma}, grid={args.grid}; "
          f"forward+backward, median of {args.reps} interleaved reps")
    for name, (module, make) in cases(args.batch, args.frames, args.gamma, args.grid, args.device).items():
        module = module.to(args.device)
        compiled = torch.compile(module)
        inputs = make()
        # parity first: the compiled module computes the same thing
        torch.testing.assert_close(compiled(*inputs), module(*inputs), rtol=1e-4, atol=1e-4)
        for _ in range(3):
            step(module, inputs), step(compiled, inputs)
        eager, comp = [], []
        for _ in range(args.reps):
            eager.append(time_once(module, inputs, args.device))
            comp.append(time_once(compiled, inputs, args.device))
        e, c = statistics.median(eager), statistics.median(comp)
        print(f"  {name:<20} eager {e * 1e3:8.2f} ms   compiled {c * 1e3:8.2f} ms   compiled/eager {c / e:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
