"""Whole-model training step and inference (issue #11): plain, fused, fused + checkpointing and
``torch.compile`` of the plain model, interleaved in one process on the same weights (bench/step.py).

One benchmark per case (geometry × batch); its timed call is the whole interleaved run (one round of
pytest-benchmark), and the per-variant figures (best step / inference time, ratios to plain,
activation bytes, peak memory, compile time) go into ``extra_info["step"]``, which
``bench/step_results.py`` turns into the table leading RESULTS.md.
"""
from __future__ import annotations

import pytest

import harness
import step


def _cases():
    s = harness.SETTINGS
    return step.step_cases(s.device, s.quick, s.full)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.id)
def test_model_step(benchmark, case, settings, request):
    harness.quiet_warnings()
    with_compile = step.compile_enabled(settings.device, request.config.getoption("--step-compile"))
    rounds = 1 if settings.quick else 3
    result = {}

    def run():
        result.update(step.run_case(case, settings.device, rounds, with_compile))

    benchmark.group = "model step"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(kind="model_step", step=result)
    assert set(result["variants"]) >= {"plain", "fused", "fused+ckpt"}
