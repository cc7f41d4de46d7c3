"""Training memory of every architecture at one shape (issue #11's GPU readiness, issue #16's DiST memory).

One training step = forward, the architecture's own loss (``compute_loss`` when it has one, else
cross-entropy), backward and AdamW, on random weights and random uint8 clips (B, T, 5, 3, H, W); on a
GPU under bf16 autocast (the published recipes). Each (architecture, variant) builds its model once;
variants switch ``set_fused_ops`` / ``set_grad_checkpoint`` on it. Reported per row:

* on a GPU: ``torch.cuda.max_memory_allocated`` over two steps (the second holds AdamW's states),
  in all and over the built model (weights + inputs); the papers' figures are measured the same way
  on their GPUs (DiST: 12.68 GB at batch 32, ViT-B/16, 8×2 frames);
* everywhere: the step time (best of the steps after the first) and the loss.

    python bench/train_memory.py --device cuda --batch 32 [--json FILE]   # ViT-B/16, every arch
    python bench/train_memory.py --tiny --batch 1                         # the demo models (CPU check)

Run by scripts/gpu_check.sh; tests/test_train_memory_bench.py runs the tiny form on the CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from step import amp_dtype, random_batch, sync  # bench/step.py: the whole-model step benchmark

# variant -> (fused_ops, grad_checkpoint)
VARIANTS = {"plain": (False, False), "fused": (True, False), "fused+ckpt": (True, True),
            "ckpt": (False, True)}
CLASSES = 174

# (label, config name or model dict, model overrides, variants): ViT-B/16-class models, the papers' shapes
FULL_CASES = [
    ("TDS-CLIP", "ssv2_b16", {"pretrained": None}, ("plain", "fused", "fused+ckpt")),
    ("DiST", {"arch": "dist", "backbone": "ViT-B-16"}, {}, ("plain", "ckpt")),  # no DiST fused op (docs/dist.md)
    ("M2-CLIP", {"arch": "m2clip", "backbone": "ViT-B-16"}, {}, ("fused", "fused+ckpt")),
    ("AM flow", {"arch": "amflow"}, {}, ("fused", "fused+ckpt")),
]
# the built-in demo models (tiny random towers): the CPU check that every row runs
TINY_CASES = [
    ("TDS-CLIP", "demo", {}, ("plain", "fused", "fused+ckpt")),
    ("DiST", "demo_dist", {}, ("plain", "ckpt")),
    ("M2-CLIP", "demo_m2clip", {}, ("fused", "fused+ckpt")),
    ("AM flow", "demo_amflow", {}, ("fused", "fused+ckpt")),
]
PAPER_GB = {"DiST": 12.68}  # training memory at batch 32, ViT-B/16 (docs/dist.md "Measured")


def model_config(source, overrides: dict, num_classes: int | None):
    """The arch's config object from a shipped config's ``model:`` section or a dict."""
    from tdsclip.archs import model_config_from_dict
    from tdsclip.engine.config import load_raw

    values = dict(load_raw(source)["model"]) if isinstance(source, str) else dict(source)
    values.update(overrides)
    if num_classes is not None:
        values["num_classes"] = num_classes
    values.setdefault("pretrained", None)
    return model_config_from_dict(values)


class Stepper:
    """One model, its AdamW and its batch; ``step()`` is one training step, returns the loss."""

    def __init__(self, config, batch: int, device: str, seed: int = 0):
        from tdsclip import build_model

        torch.manual_seed(seed)
        with torch.device(device):
            self.model = build_model(config)
        self.model.train()
        if hasattr(self.model, "set_class_names"):
            self.model.set_class_names([f"action {i}" for i in range(config.num_classes)])
        self.clips, self.labels = random_batch(config, batch, device, seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        self.device = device

    def switch(self, variant: str) -> None:
        fused, ckpt = VARIANTS[variant]
        self.model.set_fused_ops(fused).set_grad_checkpoint(ckpt)
        self.optimizer.state.clear()  # each variant pays for its AdamW states itself

    def step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        amp = amp_dtype(self.device)
        with torch.autocast(self.device, dtype=amp or torch.float32, enabled=amp is not None):
            if hasattr(self.model, "compute_loss"):
                loss, _ = self.model.compute_loss(self.model(self.clips, self.labels), self.labels, F.cross_entropy)
            else:
                loss = F.cross_entropy(self.model(self.clips).float(), self.labels)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def measure(label: str, source, overrides: dict, variants, batch: int, device: str, steps: int,
            num_classes: int | None, paper: bool = True, log=print) -> list[dict]:
    config = model_config(source, overrides, num_classes)
    stepper = Stepper(config, batch, device)
    rows = []
    for variant in variants:
        stepper.switch(variant)
        if device == "cuda":
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        times, losses = [], []
        for _ in range(steps):
            sync(device)
            t0 = time.perf_counter()
            losses.append(stepper.step())
            sync(device)
            times.append(time.perf_counter() - t0)
        row = {"arch": label, "model": config.arch, "variant": variant, "batch": batch, "frames": config.num_frames,
               "backbone": config.backbone, "device": device,
               "step_s": min(times[1:] or times), "loss": losses[-1]}
        if device == "cuda":
            row["peak_bytes"] = torch.cuda.max_memory_allocated()
            row["model_bytes"] = base
        if paper and label in PAPER_GB:
            row["paper_GB"] = PAPER_GB[label]
        log(f"[train-memory] {label} {variant}: step {row['step_s']:.3f} s, loss {row['loss']:.3f}"
            + (f", peak {row['peak_bytes'] / 2**30:.2f} GiB" if "peak_bytes" in row else ""))
        rows.append(row)
    del stepper
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | variant | backbone | batch × frames | step | peak memory (all / over the model) | paper |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = (f"{r['peak_bytes'] / 1e9:.2f} GB / {(r['peak_bytes'] - r['model_bytes']) / 1e9:.2f} GB"
                if "peak_bytes" in r else "– (GPU only)")
        paper = f"{r['paper_GB']} GB" if "paper_GB" in r else "–"
        lines.append(f"| {r['arch']} | {r['variant']} | {r['backbone']} | {r['batch']} × {r['frames']} | "
                     f"{r['step_s']:.3f} s | {peak} | {paper} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="steps per variant (>= 2: the second holds AdamW's states)")
    p.add_argument("--tiny", action="store_true", help="the demo models (tiny random towers) instead of ViT-B/16")
    p.add_argument("--archs", nargs="+", default=None, help="a subset of the labels (e.g. DiST TDS-CLIP)")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1:
        p.error(f"--batch and --steps must be >= 1 (got {args.batch}, {args.steps})")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible")
    cases = TINY_CASES if args.tiny else FULL_CASES
    if args.archs:
        unknown = sorted(set(args.archs) - {c[0] for c in cases})
        if unknown:
            p.error(f"--archs: unknown {', '.join(unknown)}; choose from {', '.join(c[0] for c in cases)}")
        cases = [c for c in cases if c[0] in args.archs]
    rows = []
    for label, source, overrides, variants in cases:
        rows += measure(label, source, overrides, variants, args.batch, args.device, args.steps,
                        None if args.tiny else CLASSES, paper=not args.tiny, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
