"""What a DiST configuration costs: parameters, FLOPs per view, activation bytes per clip
(the same counting as :mod:`tdsclip.model.summary`, whose tools this reuses).

    python -m tdsclip.dist.summary [key=value ...] [--memory-device cpu|meta|cuda] [--no-memory]

* Parameters: trainable per part; frozen vision tower; frozen text tower (the paper's 105 M for
  B/16 counts the vision tower and DiST's trainable parts, not the text tower).
* FLOPs per view: ``FlopCounterMode`` on the meta device, multiply-add = 2 (papers count MACs: the
  paper's 163 "GFLOPs" for 8×2 frames are compared with our GMACs). The text tower is not counted:
  it runs once per set of class names, not per video.
* Activation bytes kept for backward per clip: ``tdsclip.model.summary.activation_bytes_per_clip``
  on a real training forward (plain model, and with ``grad_checkpoint``).

The meta-device model, the FLOP counting per part and the activation measurement are
:mod:`tdsclip.model.summary`'s (``meta_model``, ``count_flops``, ``activation_bytes_per_clip``);
this module names DiST's parts.
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict

import torch

from ..model import summary as shared
from ..model.summary import _count, _mb
from .config import DiSTConfig
from .network import DiST

PAPER = {"params_M": 105.0, "GFLOPs_8x2": 163.1, "train_memory_GB_batch32": 12.68}


def parameter_counts(model: DiST) -> "OrderedDict[str, int]":
    layers = list(model.layers)
    counts = OrderedDict()
    counts["temporal stem (3-D conv)"] = _count(model.stem)
    counts["T-Blocks"] = sum(_count(l.t_block) for l in layers)
    counts["FC(X_l) inputs"] = sum(_count(l.input) for l in layers)
    counts["Psi (temporal conv + cls)"] = sum(_count(l.to_integration) for l in layers)
    counts["Phi (Linear)"] = sum(_count(l.to_temporal) for l in layers if l.to_temporal is not None)
    counts["I-Block FFNs"] = sum(_count(l.ffn) for l in layers)
    counts["head (pooling + projection)"] = _count(model.head) + (_count(model.classifier) if model.classifier else 0)
    counts["trainable total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts["frozen vision tower"] = _count(model.backbone)
    counts["frozen text tower"] = _count(model.text) if model.text is not None else 0
    counts["vision tower + trainable (paper's count)"] = counts["trainable total"] + counts["frozen vision tower"]
    return counts


def meta_model(config: DiSTConfig) -> DiST:
    return shared.meta_model(DiST, config)


PARTS = {"frozen vision tower": "backbone", "temporal stem": "stem", "DiST layers": "layers", "head": "head"}
# (label, fused_ops, grad_checkpoint): no DiST op has a fused kernel, so fused_ops changes nothing
VARIANTS = (("plain", False, False), ("checkpointing", False, True))


def flops_per_view(config: DiSTConfig, model: DiST | None = None) -> "OrderedDict[str, float]":
    model = model if model is not None else meta_model(config)
    size = config.resolved_image_size
    clips = torch.zeros(1, config.num_frames, 5, 3, size, size, device="meta")
    # with autograd on: the module tracker of FlopCounterMode rejects views of parameters made under
    # no_grad (the head's queries); on the meta device the graph costs nothing
    return shared.count_flops(model, clips, PARTS, grad=True)


def activation_bytes_per_clip(config: DiSTConfig, device: str = "cpu", batch: int = 1) -> "OrderedDict[str, float]":
    with torch.device(device):
        model = DiST(config)
    if model.text is not None:
        model.class_text_ready.fill_(True)  # measure the video path, not a text-tower pass
    return shared.activation_bytes_per_clip(config, device, batch, model=model, variants=VARIANTS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdsclip.dist.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="DiST config overrides key=value (e.g. gamma=4)")
    parser.add_argument("--memory-device", default="cpu", choices=("cpu", "cuda", "meta"))
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = DiSTConfig().override(args.overrides)
    except (ValueError, TypeError) as exc:
        print(f"tdsclip.dist.summary: {exc}", file=sys.stderr)
        return 2
    model = meta_model(config)
    print(f"DiST {config.backbone}: T={config.sparse_frames} sparse + {config.dense_frames} dense frames, "
          f"head={config.head}, {config.num_classes} classes")
    print("\nParameters")
    for k, v in parameter_counts(model).items():
        print(f"  {k:<42} {v:>14,d}  ({v / 1e6:.3f} M)")
    print(f"  (paper, B/16 SSv2: {PAPER['params_M']} M)")
    flops = flops_per_view(config, model)
    total = flops["total"]
    print(f"\nPer view: {total / 1e9:.2f} GFLOPs = {total / 2e9:.2f} GMACs (paper, 8x2 frames B/16: "
          f"{PAPER['GFLOPs_8x2']} 'GFLOPs', i.e. MACs)")
    for k, v in flops.items():
        if k != "total":
            print(f"    {k:<24} {v / 2e9:>10.2f} GMACs")
    if not args.no_memory:
        print(f"\nActivation bytes kept for backward per clip (training forward on {args.memory_device})")
        for k, v in activation_bytes_per_clip(config, args.memory_device).items():
            print(f"  {k:<24} {_mb(v):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
