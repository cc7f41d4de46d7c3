"""What a TDS-CLIP configuration costs: parameters, FLOPs per view, activation memory per clip.

    python -m tdsclip.model.summary [--config FILE.yaml] [key=value ...] [--frames 8 16] [--batch 1]
                                    [--memory-device cpu|meta|cuda] [--no-memory] [--no-flops]

* Parameters: trainable (per part of the side network) and frozen (the backbone).
* FLOPs per view (one clip of T segments): ``torch.utils.flop_counter.FlopCounterMode`` on the
  plain PyTorch model (``fused_ops=False``), on the meta device (no arithmetic is run). The fused ops
  are custom ops that FlopCounterMode cannot see; they do the same arithmetic. FlopCounterMode counts
  a multiply-add as 2 FLOPs; papers' "FLOPs" (0.2 T for B/16 × 8 frames) are multiply-adds (MACs),
  so both are printed. Normalisation, BN, softmax and other elementwise work are not counted (nor
  are they in the papers).
* Activation bytes kept for backward per clip: every tensor saved by autograd during a training
  forward (``saved_tensors_hooks``; storages counted once; parameters excluded), plus the inputs
  that activation checkpointing holds, for the reference model, the fused model, and the fused
  model with checkpointing. ``cpu`` / ``cuda`` run a real forward (the default, B/16 × 8 frames takes
  about a minute on 2 CPU cores). ``meta`` is instant but approximate: the fused ops fall back to
  their reference there (no kernel runs), and attention may be traced through its math form, which
  keeps the attention matrix, so meta overstates both.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import warnings
from collections import OrderedDict

import torch
from torch import nn

from ..config import TDSCLIPConfig
from . import layers

PAPER_TFLOPS = {("ViT-B-16", 8): 0.2, ("ViT-B-16", 16): 0.4, ("ViT-L-14", 8): 0.8, ("ViT-L-14", 16): 1.6}


# ---------------------------------------------------------------------------------------------
# parameters

def _count(module_or_params) -> int:
    params = module_or_params.parameters() if isinstance(module_or_params, nn.Module) else module_or_params
    return sum(p.numel() for p in params)


def parameter_counts(model) -> "OrderedDict[str, int]":
    """Parameter counts per part (trainable parts first), with totals."""
    side, head = model.side, model.head
    stem = side.stem
    blocks = list(side.blocks)
    counts = OrderedDict()
    counts["stem: RGB conv + BN"] = _count(stem.conv_rgb) + _count(stem.bn_rgb)
    counts["stem: motion conv + BN"] = _count(stem.conv_mot) + _count(stem.bn_mot)
    counts["side connections (LN + Linear)"] = _count(side.connections)
    counts["temporal branches (BN + 3 convs)"] = sum(
        _count(b.temporal_norm) + _count(b.temporal_in) + _count(b.temporal_dw) + _count(b.temporal_out)
        for b in blocks)
    counts["TD-Adapters"] = sum(_count(b.td_adapter) for b in blocks)
    counts["attention (LN + MHA)"] = sum(_count(b.attn_norm) + _count(b.attn) for b in blocks)
    counts["MLPs (BN + 2 Linear)"] = sum(_count(b.mlp_norm) + _count(b.mlp_fc1) + _count(b.mlp_fc2) for b in blocks)
    counts["position embedding"] = side.pos_embed.numel()
    counts["head (BN + Linear)"] = _count(head)
    counts["trainable total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts["frozen backbone"] = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    covered = sum(v for k, v in counts.items() if k not in ("trainable total", "frozen backbone"))
    if covered != counts["trainable total"]:  # a part was added to the model but not here
        counts["other trainable"] = counts["trainable total"] - covered
    return counts


# ---------------------------------------------------------------------------------------------
# FLOPs

def meta_model(model_class, config, **fields):
    """``model_class(config)`` built on the meta device (no memory, no arithmetic), with
    ``pretrained`` dropped and ``fields`` set on a copy of ``config``; any architecture's model."""
    cfg = copy.deepcopy(config)
    cfg.pretrained = None  # weights do not change the arithmetic; nothing to load on meta
    for key, value in fields.items():
        setattr(cfg, key, value)
    with torch.device("meta"):
        return model_class(cfg)


def _meta_model(config: TDSCLIPConfig, fused_ops: bool, grad_checkpoint: bool = False):
    from .network import TDSCLIP

    return meta_model(TDSCLIP, config, fused_ops=fused_ops, grad_checkpoint=grad_checkpoint)


def count_flops(model, clips: torch.Tensor, parts: dict, *, grad: bool = False) -> "OrderedDict[str, float]":
    """FLOPs (multiply-add = 2) of one eval-mode forward of ``clips``: per part and ``total``. ``parts`` maps
    a label to a submodule path (``{"head": "head"}``: that module and its children) or to a predicate over
    submodule paths relative to the model (``lambda name: name.startswith("adapters.")``); a part's FLOPs
    are those of its outermost matching modules. Work outside any module is only in ``total``. ``grad=True`` runs the forward with
    autograd on (nothing is run backward; FlopCounterMode's module tracker rejects views of parameters
    made under no_grad in some models)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train(False)
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(grad):
        model(clips)
    per_module = counter.get_flop_counts()
    name = type(model).__name__

    def flops_of(part) -> float:
        match = part if callable(part) else (lambda rel: rel == part or rel.startswith(part + "."))
        keys = [k for k in per_module if k.startswith(name + ".") and match(k[len(name) + 1:])]
        # a module's count includes its children's: keep only entries with no counted ancestor
        top = [k for k in keys if not any(k.startswith(other + ".") for other in keys)]
        return float(sum(sum(per_module[k].values()) for k in top))

    out = OrderedDict((label, flops_of(part)) for label, part in parts.items())
    out["total"] = float(counter.get_total_flops())
    return out


TDSCLIP_PARTS = {"backbone (frozen)": "backbone", "stems": "side.stem", "side connections": "side.connections",
                 "side blocks": "side.blocks", "head": "head"}


def flops_per_view(config: TDSCLIPConfig, frames: int | None = None, model=None) -> "OrderedDict[str, float]":
    """FLOPs (multiply-add = 2) of one view (B = 1 clip of ``frames`` segments), per part and total,
    counted on the plain PyTorch model on the meta device."""
    frames = frames or config.num_frames
    model = model if model is not None else _meta_model(config, fused_ops=False)
    size = config.resolved_image_size
    clips = torch.zeros(1, frames, 5, 3, size, size, device="meta")
    return count_flops(model, clips, TDSCLIP_PARTS)


# ---------------------------------------------------------------------------------------------
# activation memory

@contextlib.contextmanager
def saved_tensor_recorder(model: nn.Module):
    """Records the storages autograd keeps for backward (and those checkpointing keeps), excluding
    parameters and buffers. Yields a dict that gets 'bytes' and 'tensors' when the block exits."""
    exclude = set()
    for t in list(model.parameters()) + list(model.buffers()):
        exclude.add(t.untyped_storage()._cdata)
    seen: dict[int, int] = {}

    def record(t: torch.Tensor) -> None:
        try:
            storage = t.untyped_storage()
            key, nbytes = storage._cdata, storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without a plain storage
            key, nbytes = id(t), t.numel() * t.element_size()
        if key not in exclude:
            seen[key] = max(seen.get(key, 0), nbytes)

    def pack(t):
        record(t)
        return t

    def observe(tensors):
        for t in tensors:
            record(t)

    result = {}
    layers.CHECKPOINT_INPUT_OBSERVERS.append(observe)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield result
    finally:
        layers.CHECKPOINT_INPUT_OBSERVERS.remove(observe)
        result["bytes"] = sum(seen.values())
        result["tensors"] = len(seen)


def activation_bytes(model, clips: torch.Tensor) -> int:
    """Bytes kept for backward by one training-mode forward of ``clips`` (all clips together)."""
    was_training = model.training
    model.train(True)
    buffers = [(b, b.detach().clone()) for b in model.buffers()]  # the forward updates BN statistics
    try:
        with saved_tensor_recorder(model) as rec:
            out = model(clips)
        del out
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        model.train(was_training)
    return rec["bytes"]


# (label, fused_ops, grad_checkpoint) of the activation measurements
TDSCLIP_VARIANTS = (("reference", False, False), ("fused", True, False), ("fused + checkpointing", True, True))


def activation_bytes_per_clip(config: TDSCLIPConfig, device: str = "cpu", batch: int = 1, frames: int | None = None,
                              model=None, variants=TDSCLIP_VARIANTS) -> "OrderedDict[str, float]":
    """Activation bytes per clip for each of ``variants`` (default: the reference model, the fused
    model, and fused + checkpointing). ``model``: any architecture's model with ``set_fused_ops`` /
    ``set_grad_checkpoint`` (default: a TDS-CLIP built from ``config``)."""
    frames = frames or config.num_frames
    size = config.resolved_image_size
    if model is None:
        if device == "meta":
            model = _meta_model(config, fused_ops=True)
        else:
            from .network import TDSCLIP

            with torch.device(device):
                model = TDSCLIP(config)
    shape = (batch, frames, 5, 3, size, size)
    if device == "meta":
        clips = torch.zeros(shape, device="meta")
    else:
        clips = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    fused0, ckpt0 = model.fused_ops, model.grad_checkpoint
    out = OrderedDict()
    try:
        for label, fused, ckpt in variants:
            model.set_fused_ops(fused).set_grad_checkpoint(ckpt)
            out[label] = activation_bytes(model, clips) / batch
    finally:
        model.set_fused_ops(fused0).set_grad_checkpoint(ckpt0)
    return out


# ---------------------------------------------------------------------------------------------
# report

def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def summarize(config: TDSCLIPConfig, frames_list=None, memory_device: str | None = "cpu", batch: int = 1,
              flops: bool = True) -> dict:
    """All numbers as a dict: ``params``, ``flops`` ({frames: per-part dict}), ``activations``."""
    result = {"config": config.to_dict()}
    model = _meta_model(config, fused_ops=False)
    result["params"] = parameter_counts(model)
    if flops:
        result["flops"] = OrderedDict((t, flops_per_view(config, t, model)) for t in (frames_list or [config.num_frames]))
    del model
    if memory_device:
        result["activations"] = activation_bytes_per_clip(config, memory_device, batch)
        result["activations_device"] = memory_device
    return result


def format_summary(result: dict) -> str:
    cfg = result["config"]
    lines = [f"TDS-CLIP {cfg['backbone']} (pretrained={cfg['pretrained']}), d={cfg['side_dim']}, "
             f"{cfg['num_classes']} classes, T={cfg['num_frames']}, image {cfg['image_size'] or 'native'}"]
    lines.append("\nParameters")
    for k, v in result["params"].items():
        lines.append(f"  {k:<36} {v:>14,d}  ({v / 1e6:.3f} M)")
    if "flops" in result:
        lines.append("\nFLOPs per view (reference model; multiply-add = 2 FLOPs; MACs = FLOPs / 2)")
        for frames, parts in result["flops"].items():
            total = parts["total"]
            paper = PAPER_TFLOPS.get((cfg["backbone"], frames))
            extra = f"   (paper: {paper} T per view, counted as MACs)" if paper and not cfg["image_size"] else ""
            lines.append(f"  T={frames}: {total / 1e12:.3f} TFLOPs = {total / 2e12:.3f} TMACs "
                         f"({total / 1e9:,.2f} GFLOPs){extra}")
            for k, v in parts.items():
                if k != "total":
                    lines.append(f"    {k:<24} {v / 1e9:>10.2f} GFLOPs")
    if "activations" in result:
        lines.append(f"\nActivation bytes kept for backward per clip (T={cfg['num_frames']}, training forward, "
                     f"measured on {result['activations_device']})")
        for k, v in result["activations"].items():
            lines.append(f"  {k:<24} {_mb(v):>14}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tdsclip summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="model config overrides key=value (e.g. side_dim=512)")
    parser.add_argument("--config", help="YAML file with the model config (its 'model:' section if present)")
    parser.add_argument("--frames", type=int, nargs="+", help="T values for the FLOPs count (default: num_frames)")
    parser.add_argument("--batch", type=int, default=1, help="clips in the memory measurement (default 1)")
    parser.add_argument("--memory-device", default="cpu", choices=("cpu", "cuda", "meta"),
                        help="where the activation memory is measured (a real forward on cpu/cuda)")
    parser.add_argument("--no-memory", action="store_true", help="skip the activation-memory measurement")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOPs count")
    args = parser.parse_args(argv)
    try:
        config = TDSCLIPConfig.from_yaml(args.config) if args.config else TDSCLIPConfig()
        config.override(args.overrides)
    except (ValueError, TypeError, OSError) as exc:
        print(f"tdsclip summary: {exc}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # backend downgrade notices
        result = summarize(config, args.frames, None if args.no_memory else args.memory_device, args.batch,
                           flops=not args.no_flops)
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
