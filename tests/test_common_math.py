"""Host test of the shared per-element helpers (csrc/common/*_math.h) that only the CUDA kernels call, so that
an off-by-one there fails on a machine without a GPU (issue #14). csrc/tests/common_math_host_test.cpp is
compiled with plain g++ (no torch) and checked against PyTorch: max_pool1d's window and argmax (first maximum,
NaN wins), conv1d's temporal taps, the Conv3d weight layout. window_lo/window_hi are also used by the CPU
temporal max-difference kernel (its tests fail on an off-by-one too); they are checked here directly."""
from __future__ import annotations

import math
import os
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("common_math") / "common_math_host_test"
    src = os.path.join(ROOT, "csrc", "tests", "common_math_host_test.cpp")
    build = subprocess.run([CXX, "-std=c++17", "-O1", "-DTDS_NO_ATEN", "-I", os.path.join(ROOT, "csrc"), src, "-o",
                            str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]

    def call(lines: list[str]) -> list[str]:
        out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
                             check=True)
        return out.stdout.splitlines()
    return call


def test_window_matches_max_pool(run):
    cases = [(T, half, t) for T in (1, 2, 3, 8) for half in (0, 1, 2, 3, 9) for t in range(T)]
    got = run([f"window {T} {half} {t}" for T, half, t in cases])
    for (T, half, t), line in zip(cases, got):
        # the frames max_pool1d (kernel 2 half + 1, padding half, -inf padding) reads for output t
        x = torch.zeros(1, 1, T)
        x[0, 0, :] = -torch.arange(T, dtype=torch.float32)  # strictly decreasing: the argmax is the window's first frame
        _, lo = F.max_pool1d(x, 2 * half + 1, 1, half, return_indices=True)
        _, hi = F.max_pool1d(-x, 2 * half + 1, 1, half, return_indices=True)
        assert tuple(map(int, line.split())) == (lo[0, 0, t].item(), hi[0, 0, t].item()), (T, half, t)


def _pool_argmax(v: torch.Tensor, lo: int, hi: int) -> int:
    w = v[lo:hi + 1].view(1, 1, -1)
    _, idx = F.max_pool1d(w, w.shape[-1], return_indices=True)
    return lo + int(idx.item())


def test_window_argmax_and_maxdiff_match_max_pool(run):
    g = torch.Generator().manual_seed(0)
    lines, expect_arg, expect_val = [], [], []
    for trial in range(60):
        T = 1 + trial % 7
        x = torch.randint(-3, 4, (T,), generator=g).double()  # small integers: ties
        if trial % 10 == 3:
            x[trial % T] = math.nan
        center, scale = float(torch.randn(1, generator=g)), [-1.5, 0.5, 2.0][trial % 3]
        v = (x - center) * scale
        half = trial % 3
        t = trial % T
        lo, hi = max(0, t - half), min(T - 1, t + half)
        xs = " ".join("nan" if math.isnan(a) else repr(a) for a in x.tolist())
        lines.append(f"argmax {T} {lo} {hi} {center!r} {scale!r} {xs}")
        lines.append(f"maxdiff {T} {t} {lo} {hi} {center!r} {scale!r} {xs}")
        expect_arg.append(_pool_argmax(v, lo, hi))
        m = v[t] - F.max_pool1d(v[lo:hi + 1].view(1, 1, -1), hi - lo + 1).item()
        expect_val.append(float(m))
    got = run(lines)
    for i, (a, m) in enumerate(zip(expect_arg, expect_val)):
        assert int(got[2 * i]) == a, lines[2 * i]
        val = float(got[2 * i + 1])
        assert (math.isnan(val) and math.isnan(m)) or val == pytest.approx(m, abs=1e-12), lines[2 * i + 1]


def test_taps_match_conv1d(run):
    cases = [(T, pt) for T in (1, 2, 3, 5) for pt in (0, 1, 2) if T + 2 * pt >= 3]
    got = run([f"taps {T} {T + 2 * pt - 2} {pt}" for T, pt in cases])
    for (T, pt), line in zip(cases, got):
        T_out = T + 2 * pt - 2
        src_part, tgt_part = line.split("|")
        src = list(map(int, src_part.split()))
        tgt = list(map(int, tgt_part.split()))
        for t_out in range(T_out):
            for kt in range(3):
                # conv1d: output t_out, tap kt reads input frame s with a one-hot input
                w = torch.zeros(1, 1, 3)
                w[0, 0, kt] = 1.0
                expect = -1
                for s in range(T):
                    x = torch.zeros(1, 1, T)
                    x[0, 0, s] = 1.0
                    if F.conv1d(x, w, padding=pt)[0, 0, t_out].item() == 1.0:
                        expect = s
                assert src[t_out * 3 + kt] == expect, (T, pt, t_out, kt)
                if expect >= 0:
                    assert tgt[expect * 3 + kt] == t_out, (T, pt, expect, kt)
        assert sum(v >= 0 for v in tgt) == sum(v >= 0 for v in src)  # tap_target is exactly tap_source's inverse


def test_split_col_matches_the_conv3d_weight_layout(run):
    for C, P in ((3, 4), (12, 3)):
        cols = list(range(C * P * P))
        got = run([f"col {P} {c}" for c in cols])
        layout = torch.arange(C * P * P).view(C, P, P)  # weight (d, C, 3, P, P) without d and the tap
        for c, line in zip(cols, got):
            ch, ky, kx = map(int, line.split())
            assert layout[ch, ky, kx].item() == c
