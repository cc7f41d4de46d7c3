"""bench/step_results.py: the whole-model step table and the issue #11 target verdicts, on synthetic results
(the benchmark itself runs in tests/test_bench_quick.py)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import step_results  # noqa: E402


def _variant(step, infer, act, plain=(8.0, 4.0, 1000.0)):
    return {"step_best_s": step, "infer_best_s": infer, "activation_bytes": act, "step_vs_plain": step / plain[0],
            "infer_vs_plain": infer / plain[1], "activation_vs_plain": None if act is None else act / plain[2],
            "peak_bytes": 2**30, "peak_rss_bytes": 3 * 2**30, "peak_kind": "peak RSS (subprocess)"}


def _result(fused_step):
    v = {"plain": _variant(8.0, 4.0, 1000.0), "fused": _variant(fused_step, 3.9, 450.0),
         "fused+ckpt": _variant(10.0, 3.9, 120.0), "compile": _variant(7.0, 4.1, None)}
    v["compile"].update(compile_s=240.0, compile_infer_s=70.0)
    return {"case": "B16-B2", "geometry": "B16", "batch": 2, "frames": 8, "device": "cpu", "rounds": 3,
            "threads": 2, "amp": None, "variants": v}


def test_step_targets_pass_and_miss():
    ok = {w: (m, s) for w, m, s in step_results.targets(_result(6.0))}
    m, s = ok["fused step ≥ 1.25× plain's speed, ≤ 0.5× its activation bytes"]
    assert s == "PASS" and m.startswith("1.33× speed, 0.45×")
    assert ok["fused + checkpointing ≤ 1.3× plain's step time, ≤ 0.15× its activation bytes"][1] == "PASS"
    assert ok["inference (fused) not slower than plain"][1] == "PASS"
    assert ok["fused step faster than torch.compile of plain"][1] == "PASS"
    slow = {w: s for w, m, s in step_results.targets(_result(7.5))}
    assert slow["fused step ≥ 1.25× plain's speed, ≤ 0.5× its activation bytes"] == "MISS"
    assert slow["fused step faster than torch.compile of plain"] == "MISS"


def test_step_table_rows():
    text = "\n".join(step_results.section([_result(6.0)]))
    assert "ViT-B/16 (d = 320), B = 2 clips × T = 8" in text
    assert "| fused | 6.000 s | 0.75× | 1.33× |" in text
    assert "240 s (train) + 70 s (eval)" in text and "Targets (ViT-B/16, B = 2, T = 8)" in text
    assert text.index("| plain |") < text.index("| fused |") < text.index("| fused+ckpt |") < text.index("| compile |")
