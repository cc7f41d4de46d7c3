"""The model-step table that leads RESULTS.md (issue #11), from the ``model_step`` benchmarks of
bench/test_step.py (or the JSON that ``python bench/step.py run`` prints).

    python bench/step_results.py RESULT.json [...]     # prints the Markdown table

Per case: each variant's best training step (fwd + bwd + AdamW) and inference time over the
interleaved rounds, its ratio to plain (< 1 is faster), activation bytes kept for backward (and the
ratio to plain), peak memory, and for ``torch.compile`` the compile time. Then the issue #11 targets
at ViT-B/16, B = 2, T = 8 where that case was run.
"""
from __future__ import annotations

import json
import sys

ORDER = ("plain", "fused", "fused-fast", "fused+ckpt", "compile")
GEOMETRY_TITLES = {"B16": "ViT-B/16 (d = 320)", "L14": "ViT-L/14 (d = 512)", "tiny": "tiny (CI)"}


def _mib(n) -> str:
    return "–" if n is None else f"{n / 2**20:,.0f} MiB"


def _ratio(x) -> str:
    return "–" if x is None else f"{x:.2f}×"


def case_table(res: dict) -> list[str]:
    v = res["variants"]
    peak_kind = next((r.get("peak_kind") for r in v.values() if r.get("peak_kind")), None)
    title = GEOMETRY_TITLES.get(res["geometry"], res["geometry"])
    amp = f", {res['amp']} autocast" if res.get("amp") else ", float32"
    lines = [f"**{title}, B = {res['batch']} clips × T = {res['frames']}** ({res['device']}{amp}, "
             f"{res.get('threads', '?')} threads, best of {res['rounds']} interleaved rounds)", "",
             "| variant | train step | vs plain (time) | speed vs plain | inference | vs plain (time) | "
             f"step CPU time vs plain | activation bytes | vs plain | peak memory{' (' + peak_kind + ')' if peak_kind else ''} | compile time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ORDER:
        if name not in v:
            continue
        r = v[name]
        peak = r.get("peak_bytes")
        peak_s = "–" if peak is None else _mib(peak)
        if r.get("peak_rss_bytes") is not None:
            peak_s = f"{_mib(r['peak_rss_bytes'])} (+{_mib(peak)} over the built model)"
        comp = "–"
        if r.get("compile_s") is not None:
            comp = f"{r['compile_s']:.0f} s (train) + {r.get('compile_infer_s', 0):.0f} s (eval)"
        lines.append(
            f"| {name} | {r['step_best_s']:.3f} s | {_ratio(r['step_vs_plain'])} | {_ratio(1 / r['step_vs_plain'])} | "
            f"{r['infer_best_s']:.3f} s | {_ratio(r['infer_vs_plain'])} | {_ratio(r.get('step_cpu_vs_plain'))} | "
            f"{_mib(r.get('activation_bytes'))} | "
            f"{_ratio(r.get('activation_vs_plain'))} | {peak_s} | {comp} |")
    lines.append("")
    return lines


def targets(res: dict) -> list[tuple[str, str, str]]:
    """The issue #11 targets for one case (meant for ViT-B/16, B = 2, T = 8 on the CPU)."""
    v = res["variants"]
    out = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    f, c = v.get("fused"), v.get("fused+ckpt")
    if f:
        speed, act = 1 / f["step_vs_plain"], f.get("activation_vs_plain")
        out.append(("fused step ≥ 1.25× plain's speed, ≤ 0.5× its activation bytes",
                    f"{speed:.2f}× speed, {_ratio(act)} bytes", verdict(speed >= 1.25 and act is not None and act <= 0.5)))
        out.append(("inference (fused) not slower than plain", f"{f['infer_vs_plain']:.2f}× time",
                    verdict(f["infer_vs_plain"] <= 1.0)))
    if c:
        act = c.get("activation_vs_plain")
        out.append(("fused + checkpointing ≤ 1.3× plain's step time, ≤ 0.15× its activation bytes",
                    f"{c['step_vs_plain']:.2f}× time, {_ratio(act)} bytes",
                    verdict(c["step_vs_plain"] <= 1.3 and act is not None and act <= 0.15)))
    comp = v.get("compile")
    if f and comp:
        rel = comp["step_best_s"] / f["step_best_s"]
        out.append(("fused step faster than torch.compile of plain", f"compile / fused = {rel:.2f}× "
                    f"(compile {comp['step_best_s']:.2f} s, fused {f['step_best_s']:.2f} s)", verdict(rel >= 1.0)))
    return out


def _speed(v: dict, name: str) -> str:
    return _ratio(1 / v[name]["step_vs_plain"]) if name in v else "–"


def _field_ratio(v: dict, name: str, field: str) -> str:
    return _ratio(v[name].get(field)) if name in v else "–"


def _peak(v: dict, name: str) -> str:
    return _mib(v[name].get("peak_bytes")) if name in v and v[name].get("peak_bytes") is not None else "–"


def overview(results: list[dict]) -> list[str]:
    """One row per case (each its own interleaved run): what a user picking a variant needs at a glance.
    Speeds > 1 are faster than plain, times < 1 are faster; bytes are activation bytes kept for backward;
    peak = the step's own peak memory (over the built model on the CPU)."""
    lines = ["| case | threads × rounds | plain step | fused speed | fused-fast speed | fused+ckpt time | "
             "inference (fused) time | activation bytes fused / fast / ckpt | peak memory plain / fused / ckpt | "
             "compile: step time vs fused, compile time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        v = res["variants"]
        comp = "–"
        if "compile" in v and "fused" in v:
            c = v["compile"]
            comp = (f"{c['step_best_s'] / v['fused']['step_best_s']:.2f}×, "
                    f"{c.get('compile_s', 0):.0f} s + {c.get('compile_infer_s', 0):.0f} s")
        title = GEOMETRY_TITLES.get(res["geometry"], res["geometry"]).split(" (")[0]
        lines.append(
            f"| {title}, B = {res['batch']} | {res.get('threads', '?')} × {res['rounds']} | "
            f"{v['plain']['step_best_s']:.2f} s | {_speed(v, 'fused')} | {_speed(v, 'fused-fast')} | "
            f"{_field_ratio(v, 'fused+ckpt', 'step_vs_plain')} | {_field_ratio(v, 'fused', 'infer_vs_plain')} | "
            f"{_field_ratio(v, 'fused', 'activation_vs_plain')} / {_field_ratio(v, 'fused-fast', 'activation_vs_plain')} / "
            f"{_field_ratio(v, 'fused+ckpt', 'activation_vs_plain')} | "
            f"{_peak(v, 'plain')} / {_peak(v, 'fused')} / {_peak(v, 'fused+ckpt')} | {comp} |")
    lines.append("")
    return lines


def section(results: list[dict]) -> list[str]:
    """Markdown for a list of run_case results: every case's table, then the targets of the B/16 B = 2 case."""
    if not results:
        return []
    lines = ["### Training step and inference of the whole model (issue #11)", "",
             "Same weights for every variant, timed interleaved in one process (bench/step.py); "
             "train step = forward + cross-entropy + backward + AdamW. `compile` = `torch.compile` of the plain "
             "model (its activation bytes are not visible to saved-tensor hooks). `fused` = memory_mode \"lean\" "
             "(the default: the side MLP keeps its input only), `fused-fast` = memory_mode \"fast\" (it also keeps "
             "its pre-GELU hidden tensor, no GEMM recomputed).", ""]
    for res in results:
        lines += case_table(res)
    return lines + targets_table(results)


def targets_table(results: list[dict]) -> list[str]:
    """The issue #11 targets of the ViT-B/16 B = 2 case among ``results`` (none when it is not there)."""
    target_case = next((r for r in results if r["geometry"] == "B16" and r["batch"] == 2), None)
    if not target_case:
        return []
    return (["Targets (ViT-B/16, B = 2, T = 8):", "", "| target | measured | status |", "|---|---|---|"]
            + [f"| {w} | {m} | {s} |" for w, m, s in targets(target_case)] + [""])


def from_benchmarks(benchmarks: list[dict]) -> list[dict]:
    return [b["extra_info"]["step"] for b in benchmarks if b.get("extra_info", {}).get("kind") == "model_step"]


def main(argv=None) -> int:
    results = []
    for path in (argv if argv is not None else sys.argv[1:]):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        results += from_benchmarks(data["benchmarks"]) if "benchmarks" in data else [data]
    print("\n".join(section(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
