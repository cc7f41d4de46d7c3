"""GPU helpers of the benchmarks (issue #11): the L2 flush between timed repetitions, and the HBM
floor each op is compared with.

* ``flush_l2()``: writes a 256 MiB buffer, so the next repetition reads its inputs from HBM and not
  from L2 (an H200 has 60 MiB of L2; several of the ops' inputs at B·T = 64 fit in it, and timing
  them warm would report bandwidths the model never sees, since its other layers evict them).
* ``floor_section(run)``: Markdown table of each op benchmark's bytes (inputs read once, outputs
  written once, as counted by bench/harness.py) and the time those bytes take at the H200's HBM3e
  bandwidth, 4.8 TB/s: no kernel can beat it, and a GPU run's time is compared with it.
"""
from __future__ import annotations

HBM_BYTES_PER_S = 4.8e12  # NVIDIA H200 SXM, HBM3e
FLUSH_BYTES = 256 * 2**20
_FLUSH = {}


def flush_l2() -> None:
    """Evicts the GPU's L2 (no-op without CUDA). Call before each timed repetition, outside the timing."""
    import torch

    if not torch.cuda.is_available():
        return
    dev = torch.cuda.current_device()
    buf = _FLUSH.get(dev)
    if buf is None:
        buf = _FLUSH[dev] = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device=dev)
    buf.fill_(1)


def floor_seconds(nbytes: float) -> float:
    return nbytes / HBM_BYTES_PER_S


def floor_rows(run) -> list[tuple]:
    """(op, shape label, phase, bytes, floor s, measured s of the default fused backend or None)."""
    rows = []
    for (op, label, phase), impls in run.op_table().items():
        any_bench = next(iter(impls.values()))
        nbytes = any_bench["extra_info"].get("bytes")
        if not nbytes:
            continue
        fused = run.default_fused(op)
        measured = None
        if fused in impls:
            b = impls[fused]
            ev = b.get("extra_info", {}).get("cuda_event")
            measured = ev["min_ms"] / 1e3 if ev else b["stats"]["min"]
        rows.append((op, label, phase, nbytes, floor_seconds(nbytes), measured if run.device == "cuda" else None))
    return rows


def floor_section(run) -> list[str]:
    rows = floor_rows(run)
    if not rows:
        return []
    gpu = run.device == "cuda"
    head = "| op | shape | phase | bytes moved | H200 HBM floor (4.8 TB/s) |" + (" measured (default backend) | floor / measured |" if gpu else "")
    lines = ["### Bytes each op must move and the H200 HBM floor", "",
             "The time the op's bytes take at 4.8 TB/s (HBM3e of an H200): the floor a GPU run is compared "
             "with" + ("." if gpu else " (this is a CPU run: no GPU time to compare)."), "", head,
             "|---|---|---|---|---|" + ("---|---|" if gpu else "")]
    for op, label, phase, nbytes, floor, measured in rows:
        line = f"| {op} | {label} | {phase} | {nbytes / 2**20:,.1f} MiB | {floor * 1e6:,.1f} µs |"
        if gpu:
            line += " – | – |" if measured is None else f" {measured * 1e6:,.1f} µs | {floor / measured:.0%} |"
        lines.append(line)
    lines.append("")
    return lines
