"""What an AM-flow configuration costs, beside TDS-CLIP at the same shape (docs/amflow.md §6):

    python -m tdsclip.amflow.summary [key=value ...] [--frames 8] [--memory-device cpu|meta|none]
                                     [--tdsclip-backbone ViT-B-16] [--json FILE]

* parameters per part, grouped as the paper's tables are (adapters and linear layers / aligning
  encoder / temporal modules), plus the frozen image model;
* FLOPs per view (one clip of T frames, multiply-add = 2; papers print multiply-adds) from
  ``torch.utils.flop_counter.FlopCounterMode`` on the meta device;
* activation bytes kept for backward per clip (``tdsclip.model.summary.activation_bytes_per_clip``:
  saved-tensor hooks, storages once, parameters excluded; checkpointed inputs counted), for the
  explicit-attention-map path ("reference"), the fused path and fused + checkpointing — and the same
  for TDS-CLIP (its ``reference`` / ``fused`` / ``fused + checkpointing``) at the same image size and T.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import OrderedDict

import torch

from ..model import summary as shared
from ..model.summary import _count, activation_bytes_per_clip, count_flops
from .config import AMFlowConfig
from .model import AMFlowModel

# (backbone, temporal module) -> trainable M parameters of the paper's tables:
# (AM flow and linear layers, aligning encoder, temporal module)
PAPER_PARAMS_M = {("dinov2_vitb14", "tcn"): (28, 45, 54), ("ViT-B-16", "tcn"): (28, 45, 54),
                  ("dinov2_vitb14", "lstm"): (30, 45, 360), ("dinov2_vitb14", "transformer"): (32, 45, 103)}
PAPER_TFLOPS = {("tcn", 24): 5.1, ("lstm", 8): 5.3, ("transformer", 8): 6.9, ("transformer", 32): 13.8}


def parameter_counts(model: AMFlowModel) -> "OrderedDict[str, int]":
    blocks = list(model.adapters.values())
    heads = [h for b in blocks for h in (b.attn_head, b.mlp_head)]
    counts = OrderedDict()
    counts["adapters (W_down, W_up, s)"] = sum(_count(b.attn_adapter) + _count(b.mlp_adapter) for b in blocks)
    counts["classifiers (LN + Linear, per head and final)"] = (
        sum(_count(h.norm) + _count(h.fc) for h in heads) + _count(model.head_norm) + _count(model.head_fc))
    counts["token pooling weights"] = sum(_count(h.pool) for h in heads if h.pool is not None)
    counts["aligning encoders"] = sum(_count(b.aligner) for b in blocks if b.aligner is not None)
    counts["temporal modules"] = sum(_count(h.temporal) for h in heads)
    counts["trainable total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts["frozen image model"] = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return counts


def meta_model(config: AMFlowConfig) -> AMFlowModel:
    return shared.meta_model(AMFlowModel, config)


def flops_per_view(config: AMFlowConfig, frames: int | None = None, model=None) -> "OrderedDict[str, float]":
    """FLOPs (multiply-add = 2) of one clip of ``frames`` frames, per part and total. Work done
    by functional calls in the model's own block loop (attention, AM flow) counts as the frozen
    model's, except the aligned keys' column sums, which are tiny."""
    frames = frames or config.num_frames
    model = model if model is not None else meta_model(config)
    size = config.resolved_image_size
    clips = torch.zeros(1, frames, 5, 3, size, size, device=next(model.parameters()).device)

    def part_of(*parts: str):
        return lambda name: name.startswith("adapters.") and name.split(".")[2] in parts

    out = count_flops(model, clips, OrderedDict([
        ("adapters", part_of("attn_adapter", "mlp_adapter")), ("aligning encoders", part_of("aligner")),
        ("temporal heads", part_of("attn_head", "mlp_head")), ("final head", lambda n: n.startswith("head_"))]))
    out["frozen image model + AM flow"] = out["total"] - sum(v for k, v in out.items() if k != "total")
    return out


def summarize(config: AMFlowConfig, frames: int | None = None, memory_device: str | None = "cpu",
              tdsclip_backbone: str | None = None) -> dict:
    frames = frames or config.num_frames
    result = {"config": config.to_dict(), "frames": frames}
    result["params"] = parameter_counts(meta_model(config))
    paper = PAPER_PARAMS_M.get((config.backbone, config.temporal))
    if paper:
        result["paper_params_M"] = dict(zip(("AM flow and linear layers", "aligning encoder", "temporal module"), paper))
    result["flops"] = flops_per_view(config, frames)
    if memory_device:
        cfg = copy.deepcopy(config)
        cfg.num_frames = frames
        if memory_device == "meta":
            model = meta_model(cfg)
        else:
            with torch.device(memory_device):
                model = AMFlowModel(cfg)
        result["activation_bytes_per_clip"] = activation_bytes_per_clip(cfg, memory_device, 1, frames, model=model)
        del model
        if tdsclip_backbone:
            from ..config import TDSCLIPConfig

            tds = TDSCLIPConfig(backbone=tdsclip_backbone, image_size=config.resolved_image_size,
                                num_frames=frames, num_classes=config.num_classes,
                                side_dim=320 if tdsclip_backbone != "tiny" else 64)
            result["tdsclip_activation_bytes_per_clip"] = activation_bytes_per_clip(tds, memory_device, 1, frames)
    return result


def format_summary(r: dict) -> str:
    c = r["config"]
    lines = [f"AM flow: backbone {c['backbone']}, {r['frames']} frames at {c['image_size'] or 'native'} px, "
             f"temporal {c['temporal']}, align {c['align']}, blocks {c['blocks'] or 'all'}"]
    lines.append("parameters:")
    lines += [f"  {k:<46} {v / 1e6:10.3f} M" for k, v in r["params"].items()]
    if "paper_params_M" in r:
        lines.append("  paper: " + ", ".join(f"{k} {v} M" for k, v in r["paper_params_M"].items()))
    lines.append("FLOPs per view (multiply-add = 2):")
    lines += [f"  {k:<46} {v / 1e9:10.2f} GFLOPs ({v / 2e12:.3f} T MACs)" for k, v in r["flops"].items()]
    for key, title in (("activation_bytes_per_clip", "AM flow"), ("tdsclip_activation_bytes_per_clip", "TDS-CLIP")):
        if key in r:
            lines.append(f"activation bytes kept for backward per clip, {title}:")
            lines += [f"  {k:<46} {v / 2**20:10.1f} MiB" for k, v in r[key].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tdsclip.amflow.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="AMFlowConfig fields, e.g. temporal=lstm")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--memory-device", default="cpu", help="cpu | cuda | meta | none")
    p.add_argument("--tdsclip-backbone", default=None, help="also measure TDS-CLIP's activations (ViT-B-16, tiny)")
    p.add_argument("--json", default=None, help="write the numbers to this file")
    args = p.parse_args(argv)
    try:
        config = AMFlowConfig().override(args.overrides)
    except (ValueError, TypeError) as exc:
        p.error(str(exc))
    device = None if args.memory_device == "none" else args.memory_device
    result = summarize(config, args.frames, device, args.tdsclip_backbone)
    print(format_summary(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
