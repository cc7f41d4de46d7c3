"""Per-op benchmarks: forward, backward and forward+backward of every op at the ViT-B/16 and ViT-L/14
shapes, for the eager reference, torch.compile(reference) and every fused backend on the device.

One benchmark per (op, shape, implementation, phase); the parametrisation comes from
harness.op_cases (conftest.pytest_generate_tests), so ``--quick`` swaps in the CI shapes. The three
implementations of a (op, shape, phase) share a benchmark group, so pytest-benchmark's table and
make_results.py compare them within the same run.

  * fwd:     a training-mode forward (autograd records what backward needs);
  * bwd:     backward only (the forward runs, untimed, in the setup of each round);
  * fwd+bwd: both.
Gradients are reset (set to None) in the untimed setup of every round.
"""
from __future__ import annotations

import harness


def test_op(benchmark, op_case, settings):
    harness.quiet_warnings()
    op, shape, impl, phase = op_case.op, op_case.shape, op_case.impl, op_case.phase
    state = op.build(shape, settings)
    grad = state.grad_out

    def forward():
        return op.call(state, impl)

    # Warm-up outside the timed rounds: compiles (torch.compile: forward and backward graphs; Triton:
    # its kernels) and fills the allocator's caches.
    for _ in range(1 if settings.quick else 2):
        state.zero_grad()
        forward().backward(grad)
    harness.synchronize(settings)

    if phase == "fwd":
        def setup():
            state.zero_grad()
            return (), {}

        def run():
            forward()
    elif phase == "bwd":
        def setup():
            state.zero_grad()
            return (forward(),), {}

        def run(out):
            out.backward(grad)
    else:
        def setup():
            state.zero_grad()
            return (), {}

        def run():
            forward().backward(grad)

    benchmark.group = f"{op.name} | {shape.label} | {phase}"
    harness.run_timed(benchmark, settings, run, setup, warmup=1, extra_info=dict(
        kind="op", op=op.name, impl=impl, phase=phase, shape=shape.info(), device=settings.device,
        dtype=str(settings.dtype).replace("torch.", ""), bytes=op.bytes(shape, settings, phase),
        flops=op.flops(shape, phase), memory_bound=op.memory_bound))
