"""What an M2-CLIP configuration costs: tunable parameters, FLOPs per view, activation bytes kept for
backward per clip (beside TDS-CLIP's at the same shape: the memory argument for side networks).

    python -m tdsclip.m2clip.summary [key=value ...] [--frames 8] [--no-memory] [--tdsclip-memory]

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no arithmetic runs), one view =
one clip of T frames through the video encoder (the class-prompt text features are computed once per
class list, not per view); a multiply-add counts 2, papers' "GFLOPs" are multiply-adds (both printed).
Activation bytes: TDS-CLIP's recorder (tdsclip.model.summary: every tensor autograd saves in a training
forward, storages once, parameters excluded) on a real forward of random weights on the CPU.
"""
from __future__ import annotations

import argparse
import copy
import sys
from collections import OrderedDict

import torch

from ..model import summary as shared
from .config import M2CLIPConfig

PAPER = {"tunable_M": 16.0, "gflops_per_view_8f": 214.0}


def tunable_parameters(model) -> "OrderedDict[str, int]":
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    out = OrderedDict()
    out["TED-Adapters"] = count(model.video.adapters)
    out["frame adapter"] = count(model.video.frame_adapter) if model.video.frame_adapter is not None else 0
    out["Text-Adapter (last layer)"] = count(model.text.adapter)
    out["CMLM Text-Adapter"] = count(model.text.cross_adapter)
    out["CMLM head (transform + output bias)"] = count(model.mlm_head)
    out["visual classifier"] = count(model.classifier)
    out["total tunable"] = sum(out.values())
    out["frozen"] = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return out


def _meta_model(config: M2CLIPConfig):
    from .model import M2CLIP

    cfg = copy.deepcopy(config)
    cfg.pretrained, cfg.fused_ops = None, False
    with torch.device("meta"):
        return M2CLIP(cfg)


def flops_per_view(config: M2CLIPConfig, frames: int | None = None) -> "OrderedDict[str, float]":
    from torch.utils.flop_counter import FlopCounterMode

    frames = frames or config.num_frames
    model = _meta_model(config).eval()
    size = config.resolved_image_size
    clips = torch.zeros(1, frames, 5, 3, size, size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clips)
    per_module = counter.get_flop_counts()
    adapters = sum(sum(v.values()) for k, v in per_module.items() if k.startswith("M2CLIP.video.adapters.")
                   and k.count(".") == 3)
    out = OrderedDict()
    out["TED-Adapters"] = float(adapters)
    out["total"] = float(counter.get_total_flops())
    out["frozen ViT (total - adapters)"] = out["total"] - adapters
    return out


def activation_bytes(config: M2CLIPConfig, frames: int | None = None,
                     tdsclip: bool = False) -> "OrderedDict[str, float]":
    """Activation bytes kept for backward per clip (tdsclip.model.summary.activation_bytes_per_clip, the same
    counting as every architecture's): M2-CLIP as configured, with and without checkpointing; with
    ``tdsclip``, also a TDS-CLIP with fused ops on the same backbone, frames and image size."""
    from ..config import TDSCLIPConfig
    from .model import M2CLIP

    cfg = copy.deepcopy(config)
    cfg.pretrained = None
    cfg.num_frames = frames or cfg.num_frames
    out = shared.activation_bytes_per_clip(
        cfg, "cpu", 1, model=M2CLIP(cfg),
        variants=(("M2-CLIP", cfg.fused_ops, False), ("M2-CLIP + checkpointing", cfg.fused_ops, True)))
    if tdsclip:
        tds = TDSCLIPConfig(backbone=cfg.backbone, num_frames=cfg.num_frames, image_size=cfg.image_size)
        out.update(shared.activation_bytes_per_clip(tds, "cpu", 1, variants=(("TDS-CLIP (fused ops)", True, False),)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--tdsclip-memory", action="store_true", help="also TDS-CLIP's activation bytes at the same shape")
    args = ap.parse_args(argv)
    cfg = M2CLIPConfig().override(args.overrides)
    model = _meta_model(cfg)
    for k, v in tunable_parameters(model).items():
        print(f"params {k}: {v / 1e6:.3f} M")
    print(f"paper: {PAPER['tunable_M']} M tunable (B/16)")
    for k, v in flops_per_view(cfg, args.frames).items():
        print(f"flops/view {args.frames} frames {k}: {v / 1e9:.1f} GFLOPs = {v / 2e9:.1f} GMACs")
    print(f"paper: {PAPER['gflops_per_view_8f']} GFLOPs per view at 8 frames")
    if not args.no_memory:
        for label, b in activation_bytes(cfg, args.frames, tdsclip=args.tdsclip_memory).items():
            print(f"activation bytes per clip, {label}: {b / 2**20:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
