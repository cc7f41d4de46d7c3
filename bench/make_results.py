"""Turns pytest-benchmark JSON from `pytest bench/ --benchmark-only --benchmark-json=FILE` into a
Markdown report (bench/RESULTS.md): environment, the issue #5 targets with their measured ratios,
copy bandwidth, per-op times / GB/s / ratios, activation memory and end-to-end numbers.

    python bench/make_results.py cpu.json [gpu.json ...] [-o bench/RESULTS.md] [--notes bench/target_notes.md]

Times are the minimum over a benchmark's rounds (on a shared machine the minimum is the least noisy
estimate of the cost; every ratio compares two benchmarks of the same run); on a GPU they are the
minimum of the CUDA-event times. Several JSON files (e.g. a CPU and a GPU run) give one section each.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import OrderedDict, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_floor  # noqa: E402  (bytes per op and the H200 HBM floor, issue #11)
import step_results  # noqa: E402  (the whole-model step table, issue #11)

HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = ("fwd", "bwd", "fwd+bwd")


def _op_registry():
    """tds_kernels/ops/registry.py, loaded by path: it needs no torch, and this script only reads JSON."""
    import importlib.util

    path = os.path.join(os.path.dirname(HERE), "tds_kernels", "ops", "registry.py")
    spec = importlib.util.spec_from_file_location("_tds_op_registry", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolves the module of its classes
    spec.loader.exec_module(module)
    return module


_REGISTRY = _op_registry()
OP_ORDER = _REGISTRY.NAMES
OP_TITLES = {op.name: op.title for op in _REGISTRY.OPS}
FUSED_PREFERENCE = {"cpu": ("cpu",), "cuda": ("cuda", "triton")}
VARIANTS = ("reference", "fused", "fused+checkpointing")


# ------------------------------------------------------------------------------------------------
# reading

def seconds(bench: dict) -> float:
    """The time of one call: the minimum CUDA-event time on a GPU, else the minimum wall time."""
    ev = bench.get("extra_info", {}).get("cuda_event")
    if ev:
        return ev["min_ms"] / 1e3
    return bench["stats"]["min"]


class Run:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.path = path
        self.env = data.get("machine_info", {}).get("tds", {})
        self.device = self.env.get("bench_device", "cpu")
        self.benchmarks = data.get("benchmarks", [])
        self.by_kind = defaultdict(list)
        for b in self.benchmarks:
            self.by_kind[b.get("extra_info", {}).get("kind", "other")].append(b)
        self.copy_gbs = None
        for b in self.by_kind["copy"]:
            self.copy_gbs = b["extra_info"]["bytes"] / seconds(b) / 1e9

    # op benchmarks: {(op, shape label, phase): {impl: bench}}
    def op_table(self):
        table = OrderedDict()
        for b in self.by_kind["op"]:
            e = b["extra_info"]
            table.setdefault((e["op"], e["shape"]["label"], e["phase"]), {})[e["impl"]] = b
        return table

    def fused_impls(self, op: str) -> list[str]:
        impls = {b["extra_info"]["impl"] for b in self.by_kind["op"] if b["extra_info"]["op"] == op}
        return [i for i in ("cpu", "cuda", "triton") if i in impls]

    def default_fused(self, op: str) -> str | None:
        """The backend the dispatcher picks automatically on this device (first available preference)."""
        impls = self.fused_impls(op)
        for b in FUSED_PREFERENCE.get(self.device, ()):
            if b in impls:
                return b
        return impls[0] if impls else None


def geomean(values) -> float:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def ms(s: float) -> str:
    v = s * 1e3
    return f"{v:.3f}" if v < 1 else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def ratio(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.2f}×"


def mib(n: float) -> str:
    v = n / 2**20
    return f"{v:,.1f}" if v >= 10 else f"{v:.3g}"


def num(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


# ------------------------------------------------------------------------------------------------
# targets

def speedups(run: Run, op: str, baseline: str, phase: str = "fwd+bwd") -> list[tuple[str, float]]:
    fused = run.default_fused(op)
    out = []
    if fused is None:
        return out
    for (o, label, ph), impls in run.op_table().items():
        if o == op and ph == phase and baseline in impls and fused in impls:
            out.append((label, seconds(impls[baseline]) / seconds(impls[fused])))
    return out


def speed_target(run: Run, op: str, baseline: str, threshold: float, what: str) -> tuple[str, str, str]:
    values = speedups(run, op, baseline)
    if not values:
        return what, "not measured", "–"
    rs = [v for _, v in values]
    below = [f"{label} {v:.2f}×" for label, v in values if v < threshold]
    measured = (f"{geomean(rs):.2f}× geomean, {min(rs):.2f}×–{max(rs):.2f}× over {len(rs)} shapes "
                f"({run.default_fused(op)} vs {baseline})")
    if not below:
        status = "PASS"
    elif geomean(rs) >= threshold:
        status = "PARTIAL (below on: " + ", ".join(below) + ")"
    else:
        status = "MISS (below on: " + ", ".join(below) + ")"
    return what, measured, status


def memory_variants(run: Run) -> dict:
    return {b["extra_info"]["variant"]: b["extra_info"]["saved_bytes_per_clip"] for b in run.by_kind["model_memory"]}


def memory_target(run: Run, variant: str, threshold: float, what: str) -> tuple[str, str, str]:
    mem = memory_variants(run)
    if "reference" not in mem or variant not in mem:
        return what, "not measured", "–"
    r = mem[variant] / mem["reference"]
    return what, f"{r:.3f}× ({mib(mem[variant])} / {mib(mem['reference'])} MiB per clip)", (
        "PASS" if r <= threshold else f"MISS (by {r - threshold:.3f})")


def bandwidth_target(run: Run) -> tuple[str, str, str]:
    what = "GPU: memory-bound ops ≥ 80 % of the measured copy bandwidth (fwd+bwd, default backend)"
    if run.device != "cuda":
        return what, "not measured (no GPU in this run)", "–"
    if not run.copy_gbs:
        return what, "no copy-bandwidth measurement", "–"
    fracs = []
    for (op, label, phase), impls in run.op_table().items():
        fused = run.default_fused(op)
        if phase == "fwd+bwd" and fused in impls and impls[fused]["extra_info"].get("memory_bound"):
            b = impls[fused]
            fracs.append((f"{op} {label}", b["extra_info"]["bytes"] / seconds(b) / 1e9 / run.copy_gbs))
    if not fracs:
        return what, "not measured", "–"
    low = [f"{n} {f:.0%}" for n, f in fracs if f < 0.8]
    measured = f"{min(f for _, f in fracs):.0%}–{max(f for _, f in fracs):.0%} of {run.copy_gbs:.0f} GB/s"
    return what, measured, "PASS" if not low else "MISS (" + ", ".join(low) + ")"


def targets(run: Run) -> list[tuple[str, str, str]]:
    return [
        speed_target(run, "temporal_max_diff", "eager", 3.0, "Temporal max-difference fwd+bwd: fused ≥ 3× eager"),
        speed_target(run, "temporal_max_diff", "compile", 1.0,
                     "Temporal max-difference fwd+bwd: fused faster than torch.compile"),
        speed_target(run, "td_adapter", "eager", 1.5, "TD-Adapter fwd+bwd: fused ≥ 1.5× eager"),
        speed_target(run, "sme_stem", "eager", 1.5, "SME stem (uint8) fwd+bwd: fused ≥ 1.5× eager"),
        memory_target(run, "fused", 0.6, "Activation bytes per side-network training step: fused ≤ 0.6× reference"),
        memory_target(run, "fused+checkpointing", 0.25,
                      "Activation bytes per side-network training step: fused + checkpointing ≤ 0.25× reference"),
        bandwidth_target(run),
    ]


# ------------------------------------------------------------------------------------------------
# report

def env_lines(run: Run) -> list[str]:
    e = run.env
    ext = e.get("extension")
    ext_s = (f"built (CUDA kernels: {'yes' if ext.get('with_cuda') else 'no'}, OpenMP: "
             f"{'yes' if ext.get('openmp') else 'no'})") if isinstance(ext, dict) else str(ext)
    rows = [("date", e.get("date")), ("device", run.device), ("CPU", f"{e.get('cpu')} ({e.get('cpu_count')} "
            f"logical cores, torch threads {e.get('torch_threads')})"), ("GPU", e.get("gpu", "none")),
            ("activation dtype", e.get("bench_dtype")), ("python / torch / triton",
            f"{e.get('python')} / {e.get('torch')} / {e.get('triton')}"), ("tds_kernels._C", ext_s),
            ("commit", f"{e.get('git_commit')}{' + local changes' if e.get('git_dirty') else ''}"),
            ("shape set", "quick (CI-sized)" if e.get("quick") else
             "full (issue #5, --full)" if e.get("full", True) else "default (B·T = 64; heavy ops at one shape)"),
            ("source", os.path.basename(run.path))]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines


def op_section(run: Run, op: str) -> list[str]:
    table = {k: v for k, v in run.op_table().items() if k[0] == op}
    if not table:
        return []
    fused = run.fused_impls(op)
    baselines = [b for b in ("eager", "compile") if any(b in v for v in table.values())]
    gpu = run.device == "cuda" and run.copy_gbs
    has_flops = any(b["extra_info"].get("flops") for v in table.values() for b in v.values())
    head = ["shape", "phase"] + [f"{i} ms" for i in baselines + fused]
    for f in fused:
        head += [f"{f} GB/s"] + ([f"{f} % copy"] if gpu else []) + ([f"{f} TFLOP/s"] if has_flops else [])
        head += [f"{f} vs {b}" for b in baselines]
    lines = [f"### {OP_TITLES.get(op, op)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (o, label, phase), impls in table.items():
        row = [label, phase] + [ms(seconds(impls[i])) if i in impls else "–" for i in baselines + fused]
        for f in fused:
            b = impls.get(f)
            if b is None:
                row += ["–"] * (1 + bool(gpu) + has_flops + len(baselines))
                continue
            t = seconds(b)
            gbs = b["extra_info"]["bytes"] / t / 1e9
            row.append(num(gbs))
            if gpu:
                row.append(f"{gbs / run.copy_gbs:.0%}")
            if has_flops:
                row.append(num(b['extra_info'].get('flops', 0) / t / 1e12))
            row += [ratio(seconds(impls[bl]) / t) if bl in impls else "–" for bl in baselines]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def memory_section(run: Run) -> list[str]:
    lines = []
    per_op = defaultdict(dict)
    for b in run.by_kind["op_memory"]:
        e = b["extra_info"]
        per_op[e["op"]][e["impl"]] = e
    if per_op:
        some = next(iter(next(iter(per_op.values())).values()))
        lines += [f"Per op, at {some['shape']['label']} (N = {some['shape']['N']}, d = {some['shape']['d']}), "
                  "bytes autograd keeps for backward:", "",
                  "| op | eager MiB | fused MiB | fused / eager |", "|---|---|---|---|"]
        for op in sorted(per_op, key=lambda o: OP_ORDER.index(o) if o in OP_ORDER else 99):
            impls = per_op[op]
            eager = impls.get("eager", {}).get("saved_bytes")
            for impl, e in impls.items():
                if impl == "eager":
                    continue
                r = f"{e['saved_bytes'] / eager:.3f}" if eager else "–"
                lines.append(f"| {op} ({impl}) | {mib(eager or 0)} | {mib(e['saved_bytes'])} | {r} |")
        lines.append("")
    mem = memory_variants(run)
    if mem:
        e = run.by_kind["model_memory"][0]["extra_info"]
        lines += [f"Per training step of the side network ({e['backbone']} backbone, d = {e['side_dim']}, "
                  f"T = {e['frames']}, {e['image']} px), bytes kept for backward per clip:", "",
                  "| variant | MiB per clip | × reference |", "|---|---|---|"]
        ref = mem.get("reference")
        for v in VARIANTS:
            if v in mem:
                lines.append(f"| {v} | {mib(mem[v])} | {mem[v] / ref:.3f} |" if ref else f"| {v} | {mib(mem[v])} | – |")
        lines.append("")
    return lines


def e2e_section(run: Run) -> list[str]:
    lines = []
    steps = {b["extra_info"]["variant"]: b for b in run.by_kind["train_step"]}
    if steps:
        e = next(iter(steps.values()))["extra_info"]
        peak = any("peak_allocated_bytes" in b["extra_info"] for b in steps.values())
        lines += [f"One training step (forward, backward, AdamW): {e['backbone']} backbone, d = {e['side_dim']}, "
                  f"{e['clips']} clips × {e['frames']} frames, {e['image']} px, "
                  f"{'autocast ' + e['amp'] if e.get('amp') else 'float32'}:", "",
                  "| variant | ms / step | speed vs reference |" + (" peak allocated MiB |" if peak else ""),
                  "|---|---|---|" + ("---|" if peak else "")]
        ref = seconds(steps["reference"]) if "reference" in steps else None
        for v in VARIANTS:
            if v in steps:
                t = seconds(steps[v])
                row = f"| {v} | {ms(t)} | {ratio(ref / t) if ref else '–'} |"
                if peak:
                    row += f" {mib(steps[v]['extra_info'].get('peak_allocated_bytes', 0))} |"
                lines.append(row)
        lines.append("")
    data = run.by_kind["data"]
    if data:
        lines += ["Data loading (one train epoch: T = 8 segments x 5-frame windows, repeated augmentation x2; "
                  "bench/test_data_loading.py):", "",
                  "| source | decode path | videos | image | augmentation | clips / s |", "|---|---|---|---|---|---|"]
        for b in data:
            e = b["extra_info"]
            # frame folders without DALI are decoded by PIL (the "pyav" backend's path for folders)
            path = "pil" if e.get("source") == "folders" and e["path"] == "pyav" else e["path"]
            lines.append(f"| {e.get('source', 'videos')} | {path} | {e['videos']} | {e['image']} px | "
                         f"{e.get('aug', 'light')} | {e['clips_per_epoch'] / seconds(b):.1f} |")
        lines.append("")
    return lines


def step_runs_section(step_runs: list[dict]) -> list[str]:
    """The whole-model step runs of bench/step_runs/ (`python bench/step.py run ... > JSON`), oldest first:
    what the user feels, so it leads the report (issue #11). A run's optional "label" names it."""
    if not step_runs:
        return []
    out = ["## Whole-model training step (issue #11) — leads this report", "",
           "`python bench/step.py run ...` (the same code as `pytest bench/test_step.py --benchmark-only`); JSON in "
           "bench/step_runs/. Read ratios within one table only (each table is one interleaved run). Notes (what "
           "the step is made of, why a target misses): bench/target_notes.md, first section.", "",
           step_results.section([step_runs[0]])[2], ""]
    finals = sorted((r for r in step_runs if r.get("final")), key=lambda r: (r["geometry"], r["batch"]))
    if finals:
        out += ["### Where it stands: final main, one row per case", "",
                "Each row is its own interleaved run (its full table is in the history below, same label). "
                "Speeds > 1× are faster than plain; times < 1× are faster; activation bytes and peak memory as in the "
                "tables below.", ""]
        out += step_results.overview(finals) + step_results.targets_table(finals)
        out += ["### History, oldest first", ""]
    for res in step_runs:
        out += [f"#### {res.get('label') or res.get('case', 'run')}", ""]
        out += step_results.section([res])[4:]  # without the section heading and the preamble given above
    return out


def load_step_runs(folder: str | None) -> list[dict]:
    if not folder or not os.path.isdir(folder):
        return []
    runs = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                runs.append(json.load(f))
    return sorted(runs, key=lambda r: r.get("order", 0))


def render(runs: list[Run], notes: str | None, step_runs: list[dict] = ()) -> str:
    out = ["# Benchmark results (issue #5)", "",
           "Generated by `python bench/make_results.py` from `pytest bench/ --benchmark-only "
           "--benchmark-json=...`; see bench/README.md. Times: minimum over the rounds of each benchmark "
           "(CUDA-event time on a GPU); ratios compare benchmarks of the same run. GB/s counts each input read "
           "once and each output written once; TFLOP/s counts the model's GEMM/conv multiply-adds as 2 FLOPs.",
           ""]
    out += step_runs_section(list(step_runs))
    for run in runs:
        title = "GPU" if run.device == "cuda" else "CPU"
        out += [f"## {title} run", ""] + env_lines(run) + [""]
        out += step_results.section(step_results.from_benchmarks(run.benchmarks))
        out += ["### Targets", "", "| target | measured | status |", "|---|---|---|"]
        out += [f"| {w} | {m} | {s} |" for w, m, s in targets(run)]
        out.append("")
        if notes:
            out += [notes.strip(), ""]
        if run.copy_gbs:
            out += [f"Measured copy bandwidth ({run.device}): **{run.copy_gbs:.1f} GB/s** (dst.copy_(src), "
                    "read + write).", ""]
        out += gpu_floor.floor_section(run)
        out += ["### Per-op times", ""]
        for op in OP_ORDER + tuple(sorted({k[0] for k in run.op_table()} - set(OP_ORDER))):
            out += op_section(run, op)
        mem = memory_section(run)
        if mem:
            out += ["### Activation memory", ""] + mem
        e2e = e2e_section(run)
        if e2e:
            out += ["### End to end", ""] + e2e
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="+", help="pytest-benchmark JSON file(s)")
    p.add_argument("-o", "--output", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--step-runs", default=os.path.join(HERE, "step_runs"),
                   help="folder of `bench/step.py run` JSON files; they lead the report (issue #11)")
    p.add_argument("--notes", default=os.path.join(HERE, "target_notes.md"),
                   help="Markdown inserted under each targets table (what missed, why, what would close it)")
    args = p.parse_args(argv)
    runs = [Run(path) for path in args.json]
    notes = None
    if args.notes and os.path.exists(args.notes):
        with open(args.notes, encoding="utf-8") as f:
            notes = f.read()
    text = render(runs, notes, load_step_runs(args.step_runs))
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output} ({sum(len(r.benchmarks) for r in runs)} benchmarks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
