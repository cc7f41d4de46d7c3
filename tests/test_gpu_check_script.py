"""scripts/gpu_check.sh: the stages it would run on a GPU (its --dry-run works without one)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tds_kernels.ops.registry import NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _run(*args):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def stages():
    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\s+(\S+)\s+(\d+)s\s+(.*)", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


def test_every_registered_op_has_its_gpu_parity_tests_run(stages):
    command = stages["op-parity"][1]
    for name in NAMES:
        path = f"tests/test_{name}.py"
        assert path in command, f"{path} missing from the op-parity stage"
        assert os.path.exists(os.path.join(ROOT, path))


def test_training_memory_of_every_arch_at_batch_32_is_a_stage(stages):
    assert "bench/train_memory.py --device cuda --batch 32" in stages["train-memory"][1]


def test_stage_limits_fit_the_eight_minutes(stages):
    assert set(stages) >= {"op-parity", "triton-sm90", "dali-gpu", "op-bench", "step-bench", "train-memory"}
    assert sum(limit for limit, _ in stages.values()) <= 480


def test_bad_argument_is_exit_2():
    proc = _run("--bogus")
    assert proc.returncode == 2 and "--bogus" in proc.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_without_a_gpu_it_stops_with_exit_2_and_says_why():
    proc = _run("--out", "/nonexistent/never-created")
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
