"""Benchmark session setup: `pytest bench/ --benchmark-only [--quick] [--bench-device cpu|cuda]`.

* ``--quick``: CI-sized shapes and one round per benchmark (what tests/test_bench_quick.py runs), so
  the benchmarks cannot rot; the numbers are not meant to be read.
* ``--full``: every shape of the issue on the CPU as well (B·T = 128, the heavy ops at every shape).
* ``--bench-device``: where to run (default: cuda when a GPU is visible, else cpu).
* ``--bench-dtype``: activation dtype of the op benchmarks (default: float32 on CPU, bfloat16 on GPU).

Everything a benchmark measures besides its time goes into ``benchmark.extra_info`` (op, shape,
implementation, phase, bytes moved, FLOPs, saved bytes, CUDA-event time, ...), and the machine facts
into the JSON's ``machine_info``; ``python bench/make_results.py JSON`` turns it into RESULTS.md.
"""
from __future__ import annotations

import os

# Before torch / triton / tds_kernels are imported: no NaN poisoning of outputs (a fill per call
# would be timed), Triton compiled rather than interpreted, no weight downloads.
os.environ.pop("TDS_KERNELS_POISON", None)
os.environ.pop("TRITON_INTERPRET", None)
os.environ.pop("TDS_KERNELS_BACKEND", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import harness  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("tds bench")
    group.addoption("--quick", action="store_true", default=False,
                    help="CI-sized shapes, one round each (checks that every benchmark runs)")
    group.addoption("--full", action="store_true", default=False,
                    help="every shape of issue #5 on the CPU too (about 30 min on 2 cores; the default set "
                         "takes a few minutes; a GPU always runs the full set)")
    group.addoption("--step-compile", action="store_true", default=False,
                    help="also time torch.compile of the plain model in the model-step benchmark (minutes of "
                         "compiling on a small CPU; on by default on a GPU; env TDS_BENCH_STEP_COMPILE=0/1)")
    group.addoption("--bench-device", default=None, choices=("cpu", "cuda"),
                    help="device to benchmark on (default: cuda if available, else cpu)")
    group.addoption("--bench-dtype", default=None, choices=("float32", "bfloat16", "float16"),
                    help="activation dtype of the op benchmarks (default: float32 on cpu, bfloat16 on cuda)")


def _settings(config) -> harness.Settings:
    device = config.getoption("--bench-device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda: no CUDA device is visible")
    dtype = config.getoption("--bench-dtype") or ("bfloat16" if device == "cuda" else "float32")
    return harness.Settings(device=device, dtype=getattr(torch, dtype), quick=config.getoption("--quick"),
                             full=config.getoption("--full"))


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: CI-sized benchmark shapes")
    harness.SETTINGS = _settings(config)
    torch.manual_seed(0)
    if harness.SETTINGS.device == "cpu":
        # all cores of the machine, as a user would run (the CI machine has 2)
        torch.set_num_threads(os.cpu_count() or 1)


def pytest_generate_tests(metafunc):
    """Parametrise the op benchmarks from the settings (the shape lists depend on --quick)."""
    if "op_case" in metafunc.fixturenames:
        cases = harness.op_cases(harness.SETTINGS)
        metafunc.parametrize("op_case", cases, ids=[c.id for c in cases])


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["tds"] = harness.environment_info(harness.SETTINGS)


@pytest.fixture
def settings() -> harness.Settings:
    return harness.SETTINGS
