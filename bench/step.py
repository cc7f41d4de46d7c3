"""Training-step and inference benchmark of the whole TDS-CLIP model (issue #11).

One case = one geometry (ViT-B/16 d = 320 or ViT-L/14 d = 512, random weights, T = 8 segments of
5-frame windows) and one batch size. Every variant runs on the SAME weights (one model switched in
place with ``set_fused_ops`` / ``set_grad_checkpoint``; the compiled variant on a deep copy made
before any step) and the variants are timed interleaved, round after round, in one process, so
that the ratios are fair on a shared machine; each variant's time is its best round.

* train step = zero_grad, forward, cross-entropy, backward, AdamW step (one AdamW per variant);
* inference = one eval-mode forward under ``torch.inference_mode`` (checkpointing changes nothing
  there, so its row is the fused one's);
* activation bytes kept for backward: ``tdsclip.model.summary.activation_bytes`` (saved-tensor
  hooks + the inputs checkpointing keeps), all clips of the batch;
* peak memory: on a GPU ``torch.cuda.max_memory_allocated`` over one step; on the CPU the peak RSS
  of a fresh subprocess (``python bench/step.py peak ...``) that builds the model and runs two
  steps of one variant, together with its RSS after building (the difference is the step's own).

``torch.compile`` of the plain model takes minutes on a small CPU, so there it runs only when asked
(``--step-compile`` or ``TDS_BENCH_STEP_COMPILE=1``); on a GPU it runs by default
(``TDS_BENCH_STEP_COMPILE=0`` turns it off). Its compile time is reported (first call minus a warm one).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# variant -> (fused_ops, grad_checkpoint, compiled, memory_mode); "fused" is the default memory_mode
# ("lean"), "fused-fast" the other setting of the one memory option (tdsclip.config.MEMORY_MODES)
VARIANTS = {
    "plain": (False, False, False, "lean"),
    "fused": (True, False, False, "lean"),
    "fused-fast": (True, False, False, "fast"),
    "fused+ckpt": (True, True, False, "lean"),
    "compile": (False, False, True, "lean"),
}
GEOMETRIES = {
    # name: (backbone, side_dim, image_size or None for the native one)
    "B16": ("ViT-B-16", 320, None),
    "L14": ("ViT-L-14", 512, None),
    "tiny": ("tiny", 64, None),
}
FRAMES = 8
NUM_CLASSES = 174


@dataclass(frozen=True)
class StepCase:
    geometry: str
    batch: int

    @property
    def id(self) -> str:
        return f"{self.geometry}-B{self.batch}"


def step_cases(device: str, quick: bool, full: bool) -> list[StepCase]:
    """quick: the tiny backbone (CI); CPU default: the ViT-B/16 B = 2 target case; --full (CPU):
    B/16 and L/14 at B = 1, 2, 4; GPU: B/16 and L/14 at B = 32."""
    if quick:
        return [StepCase("tiny", 2)]
    if device == "cuda":
        return [StepCase("B16", 32), StepCase("L14", 32)]
    if full:
        return [StepCase(g, b) for g in ("B16", "L14") for b in (1, 2, 4)]
    return [StepCase("B16", 2)]


def compile_enabled(device: str, flag: bool) -> bool:
    env = os.environ.get("TDS_BENCH_STEP_COMPILE")
    if env is not None and env != "":
        return env not in ("0", "false", "no")
    return flag or device == "cuda"


def config_for(geometry: str):
    from tdsclip.config import TDSCLIPConfig

    backbone, side_dim, image = GEOMETRIES[geometry]
    classes = 4 if geometry == "tiny" else NUM_CLASSES
    return TDSCLIPConfig(backbone=backbone, side_dim=side_dim, num_classes=classes, num_frames=FRAMES,
                         image_size=image)


def build(case: StepCase, device: str, seed: int = 0):
    """(model, clips, labels) for the case, model in plain mode, random weights from ``seed``."""
    from tdsclip import build_model

    config = config_for(case.geometry)
    torch.manual_seed(seed)
    with torch.device(device):
        model = build_model(config)
    model.set_fused_ops(False).set_grad_checkpoint(False)
    return (model, *random_batch(config, case.batch, device, seed))


def random_batch(config, batch: int, device: str, seed: int = 0):
    """(clips, labels) of the model contract for any architecture's ``config``: uint8 clips
    (batch, T, 5, 3, H, W) and labels, drawn from ``seed`` on the CPU (the same on every device)."""
    size = config.resolved_image_size
    gen = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (batch, config.num_frames, 5, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, config.num_classes, (batch,), generator=gen)
    return clips.to(device), labels.to(device)


def amp_dtype(device: str):
    """bf16 autocast on a GPU (the paper's recipe), float32 on the CPU."""
    return torch.bfloat16 if device == "cuda" else None


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Variant:
    """One variant of the case: its model view, optimiser and step / inference callables."""

    def __init__(self, name: str, model, clips, labels, device: str):
        self.name, self.device = name, device
        fused, ckpt, compiled, mode = VARIANTS[name]
        self.fused, self.ckpt, self.compiled, self.mode = fused, ckpt, compiled, mode
        self.model = model
        self.run_model = torch.compile(model) if compiled else model
        self.clips, self.labels = clips, labels
        self.amp = amp_dtype(device)
        # a fresh AdamW per variant: its state (moments) is part of what a step touches
        self.opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=0.15)

    def select(self) -> None:
        if not self.compiled:
            self.model.set_fused_ops(self.fused).set_grad_checkpoint(self.ckpt).set_memory_mode(self.mode)

    def step(self) -> None:
        self.select()
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            logits = self.run_model(self.clips)
        loss = F.cross_entropy(logits.float(), self.labels, label_smoothing=0.1)
        loss.backward()
        self.opt.step()
        sync(self.device)

    def infer(self) -> None:
        self.select()
        self.model.eval()
        with torch.inference_mode(), torch.autocast(self.device, dtype=self.amp or torch.float32,
                                                    enabled=self.amp is not None):
            self.run_model(self.clips)
        sync(self.device)
        self.model.train()


def _timed(fn, cpu: list | None = None) -> float:
    """Wall seconds of fn(); appends its process CPU seconds (all threads) to ``cpu`` when given: on a
    shared, overloaded machine the CPU time is the steadier measure of the work a variant does."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    t = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return t


def activation_bytes(model, clips, fused: bool, ckpt: bool, mode: str, amp) -> int:
    from tdsclip.model.summary import activation_bytes as measure

    model.set_fused_ops(fused).set_grad_checkpoint(ckpt).set_memory_mode(mode)
    device = clips.device.type
    with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
        return measure(model, clips)


def run_case(case: StepCase, device: str, rounds: int, with_compile: bool, variants=None,
             peak_subprocess: bool = True, log=print, measure_activation: bool = True) -> dict:
    """Times every variant interleaved; returns {"case", "device", "variants": {name: {...}}}."""
    names = [v for v in (variants or VARIANTS) if with_compile or not VARIANTS[v][2]]
    model, clips, labels = build(case, device)
    compiled_model = copy.deepcopy(model) if "compile" in names else None  # same weights, before any step
    runs = {n: Variant(n, compiled_model if VARIANTS[n][2] else model, clips, labels, device) for n in names}
    result = {n: {"step_s": [], "infer_s": [], "step_cpu_s": [], "infer_cpu_s": []} for n in names}

    # warm-up: one step and one inference each (compilation happens here; timed for the compile time)
    for n, v in runs.items():
        result[n]["first_step_s"] = _timed(v.step)
        result[n]["first_infer_s"] = _timed(v.infer)
        log(f"[step] {case.id} {n}: warm-up step {result[n]['first_step_s']:.2f} s, "
            f"inference {result[n]['first_infer_s']:.2f} s")
    for r in range(rounds):
        for n, v in runs.items():  # interleaved: every variant once per round
            result[n]["step_s"].append(_timed(v.step, result[n]["step_cpu_s"]))
            result[n]["infer_s"].append(_timed(v.infer, result[n]["infer_cpu_s"]))
        log(f"[step] {case.id} round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {result[n]['step_s'][-1]:.2f}/{result[n]['infer_s'][-1]:.2f} s" for n in names))
    amp = amp_dtype(device)
    for n in names:
        rec = result[n]
        rec["step_best_s"], rec["infer_best_s"] = min(rec["step_s"]), min(rec["infer_s"])
        rec["step_cpu_best_s"], rec["infer_cpu_best_s"] = min(rec["step_cpu_s"]), min(rec["infer_cpu_s"])
        if VARIANTS[n][2]:
            rec["compile_s"] = max(0.0, rec["first_step_s"] - rec["step_best_s"])
            rec["compile_infer_s"] = max(0.0, rec["first_infer_s"] - rec["infer_best_s"])
            rec["activation_bytes"] = None  # AOTAutograd's saved tensors are not seen by the hooks
        elif measure_activation:
            fused, ckpt, _, mode = VARIANTS[n]
            rec["activation_bytes"] = activation_bytes(model, clips, fused, ckpt, mode, amp)
        if device == "cuda":
            v = runs[n]
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            v.step()
            rec["peak_bytes"] = torch.cuda.max_memory_allocated()
            rec["peak_kind"] = "max_memory_allocated"
        elif peak_subprocess:
            rec.update(peak_rss(case, n))
            rec["peak_kind"] = "peak RSS (subprocess)"
    base = result["plain"]
    for n in names:
        rec = result[n]
        rec["step_vs_plain"] = rec["step_best_s"] / base["step_best_s"]
        rec["infer_vs_plain"] = rec["infer_best_s"] / base["infer_best_s"]
        rec["step_cpu_vs_plain"] = rec["step_cpu_best_s"] / base["step_cpu_best_s"]
        if rec.get("activation_bytes") is not None and base.get("activation_bytes"):
            rec["activation_vs_plain"] = rec["activation_bytes"] / base["activation_bytes"]
    del runs, model, compiled_model
    return {"case": case.id, "geometry": case.geometry, "batch": case.batch, "frames": FRAMES, "device": device,
            "rounds": rounds, "threads": torch.get_num_threads(), "amp": str(amp).replace("torch.", "") if amp else None,
            "variants": result}


def peak_rss(case: StepCase, variant: str) -> dict:
    """Peak RSS of a fresh process that builds the case's model and runs two steps of ``variant`` with the
    caller's thread count."""
    cmd = [sys.executable, os.path.abspath(__file__), "peak", "--geometry", case.geometry, "--batch",
           str(case.batch), "--variant", variant, "--threads", str(torch.get_num_threads())]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"peak RSS subprocess for {case.id} {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Resets VmHWM (Linux >= 4.0: writing 5 to clear_refs), so that the peak excludes the model build."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _threads(value: int | None) -> int:
    """--threads: every core by default; fewer lets a case run on one core beside other work (the
    variants still share the count, so the ratios stay fair)."""
    if value is None:
        return os.cpu_count() or 1
    if value < 1:
        raise SystemExit(f"step.py: --threads must be >= 1, got {value}")
    return value


def _peak_main(args) -> int:
    torch.set_num_threads(_threads(args.threads))
    case = StepCase(args.geometry, args.batch)
    model, clips, labels = build(case, "cpu")
    v = Variant(args.variant, model, clips, labels, "cpu")
    import gc

    gc.collect()
    base = _status_bytes("VmRSS")
    reset = _reset_peak_rss()
    for _ in range(2):
        v.step()
    # without a reset the peak also covers the build (ru_maxrss == VmHWM)
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss_bytes": peak, "rss_after_build_bytes": base, "peak_bytes": peak - base,
                      "peak_reset": reset}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("peak", help="(internal) peak RSS of two steps of one variant, as JSON")
    pk.add_argument("--geometry", choices=list(GEOMETRIES), required=True)
    pk.add_argument("--batch", type=int, required=True)
    pk.add_argument("--variant", choices=list(VARIANTS), required=True)
    pk.add_argument("--threads", type=int, default=None)
    run = sub.add_parser("run", help="time one case interleaved and print its JSON")
    run.add_argument("--geometry", choices=list(GEOMETRIES), default="B16")
    run.add_argument("--batch", type=int, default=2)
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--compile", action="store_true")
    run.add_argument("--no-peak", action="store_true")
    run.add_argument("--no-activation", action="store_true", help="skip the activation-byte forwards")
    run.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                     help="a subset (plain is always added: the ratios are to it)")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    args = p.parse_args(argv)
    if args.cmd == "peak":
        return _peak_main(args)
    torch.set_num_threads(_threads(args.threads))
    res = run_case(StepCase(args.geometry, args.batch), args.device, args.rounds,
                   compile_enabled(args.device, args.compile), peak_subprocess=not args.no_peak,
                   measure_activation=not args.no_activation,
                   variants=None if args.variants is None else ["plain"] + [v for v in args.variants if v != "plain"],
                   log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
