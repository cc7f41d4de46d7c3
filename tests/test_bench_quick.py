"""The benchmarks must not rot: run the quick set of `pytest bench/ --benchmark-only` once, end to end
(every op × implementation × phase, memory, training step, data loading, copy bandwidth) on CI-sized
shapes, and turn its JSON into a report with bench/make_results.py. The numbers are not checked
(never assert on timings); what is checked is that everything ran and was recorded.

A separate, fast test checks make_results.py's arithmetic (ratios, target verdicts) on a synthetic JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import make_results  # noqa: E402
from tds_kernels.ops.registry import NAMES as REGISTERED  # noqa: E402


def _bench_env() -> dict:
    env = dict(os.environ)
    # the benchmarks time compiled Triton (not the interpreter) and unpoisoned outputs; bench/conftest.py
    # also clears these, this keeps the subprocess honest if it is ever run differently
    for key in ("TRITON_INTERPRET", "TDS_KERNELS_POISON", "TDS_KERNELS_BACKEND"):
        env.pop(key, None)
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.mark.slow
def test_quick_benchmarks_run_and_report(tmp_path):
    out_json, out_md = tmp_path / "quick.json", tmp_path / "RESULTS.md"
    cmd = [sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "--quick", "--bench-device", "cpu",
           f"--benchmark-json={out_json}", "-q", "-x", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_bench_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"quick benchmarks failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out_json.read_text())
    benches = data["benchmarks"]
    kinds = {b["extra_info"]["kind"] for b in benches}
    assert {"op", "copy", "op_memory", "model_memory", "train_step", "data", "model_step"} <= kinds, kinds
    steps = [b["extra_info"]["step"] for b in benches if b["extra_info"]["kind"] == "model_step"]
    assert steps and {"plain", "fused", "fused-fast", "fused+ckpt"} <= set(steps[0]["variants"])
    assert all(v["step_best_s"] > 0 and v["activation_bytes"] > 0 for v in steps[0]["variants"].values())
    ops = {}
    for b in benches:
        e = b["extra_info"]
        if e["kind"] == "op":
            ops.setdefault(e["op"], set()).add((e["impl"], e["phase"]))
            assert b["stats"]["rounds"] >= 1 and b["stats"]["min"] > 0
            assert e["bytes"] > 0
    assert set(ops) == set(REGISTERED), set(ops)
    for op, done in ops.items():
        for impl in ("eager", "compile"):
            assert {(impl, p) for p in ("fwd", "bwd", "fwd+bwd")} <= done, (op, impl, done)
    memory = {b["extra_info"]["variant"]: b["extra_info"]["saved_bytes_per_clip"] for b in benches
              if b["extra_info"]["kind"] == "model_memory"}
    assert set(memory) == {"reference", "fused", "fused+checkpointing"} and all(v > 0 for v in memory.values())
    assert data["machine_info"]["tds"]["quick"] is True

    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_results.py"), str(out_json), "-o",
                           str(out_md), "--notes", ""], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out_md.read_text()
    for needle in ("## CPU run", "### Training step and inference of the whole model", "### Targets", "### Per-op times", "### Activation memory", "### End to end",
                   "Temporal max-difference fwd+bwd", "clips / s"):
        assert needle in text, f"{needle!r} missing from the report"


# ---- make_results.py on a synthetic run ------------------------------------------------------------

def _bench(kind, seconds, **info):
    return {"stats": {"min": seconds, "rounds": 3}, "extra_info": {"kind": kind, **info}}


def _op(op, impl, label, seconds, phase="fwd+bwd", nbytes=1e9):
    shape = {"label": label, "N": 196, "d": 320}
    return _bench("op", seconds, op=op, impl=impl, phase=phase, shape=shape, bytes=nbytes, flops=0,
                  memory_bound=True)


def _synthetic(tmp_path, device="cpu", fused_tmd=0.01):
    benches = [
        _bench("copy", 0.1, bytes=2e9),
        _op("temporal_max_diff", "eager", "B/16 BT=64 T=8", 0.06),
        _op("temporal_max_diff", "compile", "B/16 BT=64 T=8", 0.02),
        _op("temporal_max_diff", "cpu" if device == "cpu" else "cuda", "B/16 BT=64 T=8", fused_tmd),
        # twice the clips: twice the bytes and (at the same bandwidth) twice the time
        _op("temporal_max_diff", "eager", "B/16 BT=128 T=8", 0.12, nbytes=2e9),
        _op("temporal_max_diff", "compile", "B/16 BT=128 T=8", 0.04, nbytes=2e9),
        _op("temporal_max_diff", "cpu" if device == "cpu" else "cuda", "B/16 BT=128 T=8", 2 * fused_tmd, nbytes=2e9),
        _bench("model_memory", 1.0, variant="reference", saved_bytes_per_clip=1000.0, backbone="tiny", side_dim=64,
               frames=8, image=64),
        _bench("model_memory", 1.0, variant="fused", saved_bytes_per_clip=500.0, backbone="tiny", side_dim=64,
               frames=8, image=64),
        _bench("model_memory", 1.0, variant="fused+checkpointing", saved_bytes_per_clip=300.0, backbone="tiny",
               side_dim=64, frames=8, image=64),
    ]
    path = tmp_path / f"{device}.json"
    path.write_text(json.dumps({"machine_info": {"tds": {"bench_device": device, "quick": False}},
                                "benchmarks": benches}))
    return make_results.Run(str(path))


def test_make_results_targets(tmp_path):
    run = _synthetic(tmp_path)
    verdict = {w: (m, s) for w, m, s in make_results.targets(run)}
    m, s = verdict["Temporal max-difference fwd+bwd: fused ≥ 3× eager"]
    assert s == "PASS" and m.startswith("6.00× geomean")
    m, s = verdict["Temporal max-difference fwd+bwd: fused faster than torch.compile"]
    assert s == "PASS" and "2.00×" in m
    assert verdict["Activation bytes per side-network training step: fused ≤ 0.6× reference"][1] == "PASS"
    m, s = verdict["Activation bytes per side-network training step: fused + checkpointing ≤ 0.25× reference"]
    assert s.startswith("MISS") and m.startswith("0.300×")
    assert verdict["TD-Adapter fwd+bwd: fused ≥ 1.5× eager"][1] == "–"  # not measured
    assert "no GPU" in verdict["GPU: memory-bound ops ≥ 80 % of the measured copy bandwidth (fwd+bwd, default backend)"][0]

    slow = {w: s for w, m, s in make_results.targets(_synthetic(tmp_path, fused_tmd=0.025))}
    assert slow["Temporal max-difference fwd+bwd: fused ≥ 3× eager"].startswith("MISS")
    assert slow["Temporal max-difference fwd+bwd: fused faster than torch.compile"].startswith("MISS")


def test_make_results_gpu_bandwidth_fraction(tmp_path):
    run = _synthetic(tmp_path, device="cuda", fused_tmd=0.05)  # 1 GB in 50 ms = 20 GB/s of a 20 GB/s copy
    what, measured, status = make_results.targets(run)[-1]
    assert status == "PASS" and measured.startswith("100%"), measured
    text = make_results.render([run], None)
    assert "## GPU run" in text and "% copy" in text
    # a kernel at 10 GB/s of the 20 GB/s copy is a miss that names the shape
    what, measured, status = make_results.targets(_synthetic(tmp_path, device="cuda", fused_tmd=0.1))[-1]
    assert status.startswith("MISS") and "50%" in status and "BT=64" in status, status


def test_every_registered_op_has_a_benchmark_and_a_title():
    import harness

    assert [b.name for b in harness.op_benches()] == list(REGISTERED)
    assert tuple(make_results.OP_ORDER) == tuple(REGISTERED) and set(make_results.OP_TITLES) == set(REGISTERED)


def test_step_runs_lead_the_report_in_order(tmp_path):
    """bench/step_runs/*.json (what the user feels) come first, ordered by "order", each under its label."""
    def run(order, label, fused_vs_plain):
        var = {"plain": {"step_best_s": 7.0, "step_vs_plain": 1.0, "infer_best_s": 4.0, "infer_vs_plain": 1.0,
                         "activation_bytes": 2**30, "activation_vs_plain": 1.0},
               "fused": {"step_best_s": 7.0 * fused_vs_plain, "step_vs_plain": fused_vs_plain, "infer_best_s": 4.0,
                         "infer_vs_plain": 1.0, "activation_bytes": 2**29, "activation_vs_plain": 0.5}}
        return {"order": order, "label": label, "case": "B16-B2", "geometry": "B16", "batch": 2, "frames": 8,
                "device": "cpu", "rounds": 2, "threads": 2, "amp": None, "variants": var}
    folder = tmp_path / "step_runs"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(run(2, "After", 0.75)))
    (folder / "b.json").write_text(json.dumps(run(1, "Before", 1.05)))
    text = "\n".join(make_results.step_runs_section(make_results.load_step_runs(str(folder))))
    assert text.index("#### Before") < text.index("#### After")
    after = text[text.index("#### After"):]
    assert "1.33× speed, 0.50× bytes | PASS" in after
    assert "0.95× speed" in text[:text.index("#### After")]
    assert make_results.step_runs_section([]) == []


def test_final_step_runs_are_summarised_one_row_per_case_before_the_history(tmp_path):
    """Runs marked "final" get one overview row each (speeds, bytes, peak memory, compile) above the history."""
    def run(order, batch, fused_vs_plain, final, compile_s=None):
        var = {"plain": {"step_best_s": 7.0, "step_vs_plain": 1.0, "infer_best_s": 4.0, "infer_vs_plain": 1.0,
                         "activation_bytes": 2**30, "activation_vs_plain": 1.0, "peak_bytes": 3 * 2**30},
               "fused": {"step_best_s": 7.0 * fused_vs_plain, "step_vs_plain": fused_vs_plain, "infer_best_s": 3.6,
                         "infer_vs_plain": 0.9, "activation_bytes": 2**29, "activation_vs_plain": 0.5,
                         "peak_bytes": 2**30}}
        if compile_s is not None:
            var["compile"] = {"step_best_s": 7.7, "step_vs_plain": 1.1, "infer_best_s": 4.0, "infer_vs_plain": 1.0,
                              "compile_s": compile_s, "compile_infer_s": 60.0}
        return {"order": order, "label": f"run {order}", "case": f"B16-B{batch}", "geometry": "B16", "batch": batch,
                "frames": 8, "device": "cpu", "rounds": 2, "threads": 1, "amp": None, "variants": var,
                "final": final}
    runs = [run(1, 2, 1.1, False), run(2, 2, 0.8, True, compile_s=200.0), run(3, 1, 0.9, True)]
    text = "\n".join(make_results.step_runs_section(runs))
    head = text[:text.index("### History")]
    rows = [line for line in head.splitlines() if line.startswith("| ViT-B/16")]
    assert len(rows) == 2  # the two final runs, not the old one, ordered by geometry and batch
    assert rows[0].startswith("| ViT-B/16, B = 1 | 1 × 2 |")
    assert "| 1.25× |" in rows[1] and "| 0.90× |" in rows[1] and "3,072 MiB / 1,024 MiB / –" in rows[1]
    assert "1.38×, 200 s + 60 s" in rows[1]  # compile 7.7 s / fused 5.6 s
    assert "1.25× speed, 0.50× bytes | PASS" in head  # targets of the final B/16 B = 2 run
    assert text.index("#### run 1") > text.index("### History")
