"""``tdsclip convert SRC DST``: a checkpoint of the published TDS-CLIP training code → a model directory.

    tdsclip convert tdsclip_ssv2_b16.pth models/ssv2_b16 --class-names something-something-v2-labels.json
    tdsclip predict video.webm --model models/ssv2_b16

SRC is what the authors' code saves: ``{"epoch", "model_state_dict", "optimizer_state_dict"}``, keys
prefixed by ``module.`` when trained under DDP, tensors float32 or float16 (a bare state_dict is
accepted too). It is read with ``torch.load(weights_only=True)``: a file that holds anything but
tensors and plain containers is refused, no pickled code runs. DST gets ``config.json`` +
``model.safetensors`` (:mod:`tdsclip.hub`), loadable by ``tdsclip.TDSCLIP.from_pretrained``,
``tdsclip eval DST`` and ``tdsclip predict --model DST``.

The backbone (width, patch, depth: ViT-B-16, ViT-L-14, the ``tiny`` test tower), image size, side width,
class count and TD-Adapter reduction are read from the tensor shapes; flags override them, and the
settings no tensor shows (``num_frames``, ``alpha``, ``pool_kernel``, ...) take the published defaults
unless given with ``--set key=value``. The published blocks always use QuickGELU (docs/model.md §7).

Exit status: 0 written; 2 bad arguments, an unreadable or refused SRC, or a state_dict that does not
match the model (missing, unknown or mis-shaped keys, all listed, under their published names).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import torch

# (published width, patch, layers) → our backbone name
BACKBONES = {(768, 16, 12): "ViT-B-16", (1024, 14, 24): "ViT-L-14", (64, 16, 3): "tiny"}


class ConversionError(ValueError):
    """SRC cannot be converted; the message lists every problem."""


# ---------------------------------------------------------------------------------------------
# names: ours → published (docs/model.md §7: one to one)

_PREFIX_RULES = [  # (our prefix, published prefix), first match wins; {i} is a layer index
    (r"backbone\.resblocks\.(\d+)\.", "visual.transformer.resblocks.{i}."),
    (r"backbone\.", "visual."),
    (r"side\.pos_embed$", "visual.transformer.side_spatial_position_embeddings"),
    (r"side\.connections\.(\d+)\.norm\.", "visual.transformer.side_lns.{i}."),
    (r"side\.connections\.(\d+)\.proj\.", "visual.transformer.side_linears.{i}."),
    (r"side\.blocks\.(\d+)\.temporal_norm\.", "visual.transformer.side_transformer.{i}.bn_1."),
    (r"side\.blocks\.(\d+)\.temporal_in\.", "visual.transformer.side_transformer.{i}.conv.0."),
    (r"side\.blocks\.(\d+)\.temporal_dw\.", "visual.transformer.side_transformer.{i}.conv.1."),
    (r"side\.blocks\.(\d+)\.temporal_out\.", "visual.transformer.side_transformer.{i}.conv.2."),
    (r"side\.blocks\.(\d+)\.td_adapter\.down\.", "visual.transformer.side_transformer.{i}.mse.conv1."),
    (r"side\.blocks\.(\d+)\.td_adapter\.bn1\.", "visual.transformer.side_transformer.{i}.mse.bn1."),
    (r"side\.blocks\.(\d+)\.td_adapter\.up\.", "visual.transformer.side_transformer.{i}.mse.conv2."),
    (r"side\.blocks\.(\d+)\.td_adapter\.bn2\.", "visual.transformer.side_transformer.{i}.mse.bn2."),
    (r"side\.blocks\.(\d+)\.attn_norm\.", "visual.transformer.side_transformer.{i}.ln_1."),
    (r"side\.blocks\.(\d+)\.attn\.", "visual.transformer.side_transformer.{i}.attn."),
    (r"side\.blocks\.(\d+)\.mlp_norm\.", "visual.transformer.side_transformer.{i}.bn_2."),
    (r"side\.blocks\.(\d+)\.mlp_fc1\.", "visual.transformer.side_transformer.{i}.mlp.fc1."),
    (r"side\.blocks\.(\d+)\.mlp_fc2\.", "visual.transformer.side_transformer.{i}.mlp.fc2."),
    (r"side\.stem\.conv_rgb\.", "visual.side_conv1."),
    (r"side\.stem\.bn_rgb\.", "visual.side_pre_bn3d."),
    (r"side\.stem\.conv_mot\.", "visual.side_conv1_c5."),
    (r"side\.stem\.bn_mot\.", "visual.side_pre_bn3d_c5."),
    (r"head\.norm\.", "visual.side_post_bn."),
    (r"head\.fc\.", "fc."),
]
_COMPILED = [(re.compile("^" + pattern), target) for pattern, target in _PREFIX_RULES]


def published_name(ours: str) -> str:
    """The published state_dict key of one of our keys."""
    for pattern, target in _COMPILED:
        m = pattern.match(ours)
        if m:
            return target.format(i=m.group(1) if m.groups() else "") + ours[m.end():]
    raise KeyError(f"no published name for {ours!r}")


def to_our_layout(ours: str, tensor: torch.Tensor, shape: tuple) -> torch.Tensor:
    """The published tensor in our layout: the TD-Adapter's 1×1 convs are 2-D ``Conv2d`` weights there
    (h, d, 1, 1) and ``Conv3d`` weights (h, d, 1, 1, 1) here; every other tensor has our shape."""
    if ".td_adapter." in ours and ours.endswith(("down.weight", "up.weight")) and tensor.dim() == 4 \
            and len(shape) == 5:
        from einops import rearrange

        return rearrange(tensor, "o i kh kw -> o i 1 kh kw")
    return tensor


# ---------------------------------------------------------------------------------------------
# reading

def read_published(path: str) -> tuple[dict, dict]:
    """(state_dict with ``module.`` stripped, other top-level entries such as ``epoch``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SRC {path!r}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled objects beyond tensors/containers, truncated or foreign files
        raise ConversionError(
            f"SRC {path!r}: refused by torch.load(weights_only=True) ({_load_reason(exc)}). A published "
            "checkpoint holds only tensors and plain containers; this file holds something else (or is "
            "damaged), so it is not loaded: loading never runs code stored in a checkpoint.") from exc
    if not isinstance(raw, dict):
        raise ConversionError(f"SRC {path!r}: expected a dict, got {type(raw).__name__}")
    info = {}
    state = raw
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(raw.get(key), dict):
            state = raw[key]
            info = {k: v for k, v in raw.items() if isinstance(v, (int, float, str))}
            break
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"SRC {path!r}: entry {key!r} of the state_dict is a {type(value).__name__}, "
                                  "not a tensor")
        tensors[key[len("module."):] if key.startswith("module.") else key] = value
    if not tensors:
        raise ConversionError(f"SRC {path!r}: the state_dict is empty")
    return tensors, info


def _load_reason(exc: Exception) -> str:
    """The part of torch.load's error that says what was found (torch's own text goes on to suggest
    turning the safety off, which we never do)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if "unsupported global" in line.lower() or "unsupported operand" in line.lower():
            return line.replace("WeightsUnpickler error: ", "")
    first = str(exc).splitlines()[0] if str(exc) else ""
    return type(exc).__name__ + ("" if "weights_only" in first else f": {first}")


def _shape(sd: dict, key: str) -> tuple:
    if key not in sd:
        raise ConversionError(f"cannot infer the model: key {key!r} is missing (give the settings as flags, "
                              "e.g. --backbone, --side-dim, --num-classes)")
    return tuple(sd[key].shape)


def infer_config(sd: dict) -> dict:
    """Model config fields read from the published tensor shapes (``backbone`` only when the
    width / patch / depth is a known one)."""
    width, _, patch, _ = _shape(sd, "visual.conv1.weight")
    layers = len({m.group(1) for k in sd for m in [re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k)] if m})
    values = {"quick_gelu": True, "pretrained": None}
    backbone = BACKBONES.get((width, patch, layers))
    if backbone is not None:
        values["backbone"] = backbone
    tokens = _shape(sd, "visual.positional_embedding")[0] - 1
    side = int(tokens ** 0.5 + 0.5)
    if side * side != tokens:
        raise ConversionError(f"visual.positional_embedding has {tokens} patch rows, not a square grid")
    values["image_size"] = side * patch
    values["side_dim"] = _shape(sd, "visual.transformer.side_spatial_position_embeddings")[1]
    values["num_classes"] = _shape(sd, "fc.weight")[0]
    narrow = _shape(sd, "visual.transformer.side_transformer.0.mse.conv1.weight")[0]
    if narrow and values["side_dim"] % narrow == 0:
        values["reduction"] = values["side_dim"] // narrow
    values["_found"] = f"width {width}, patch {patch}, {layers} layers"
    return values


# ---------------------------------------------------------------------------------------------
# converting

def convert_state_dict(sd: dict, expected: dict) -> dict:
    """Our state_dict from the published one. ``expected``: our key → (shape, dtype) of the target
    model. Raises ConversionError listing every missing, unknown and mis-shaped key."""
    by_published = {published_name(k): k for k in expected}
    missing = sorted(p for p in by_published if p not in sd)
    unknown = sorted(k for k in sd if k not in by_published)
    out, misshaped = {}, []
    for pub, ours in by_published.items():
        if pub not in sd:
            continue
        shape, dtype = expected[ours]
        tensor = to_our_layout(ours, sd[pub], shape)
        if tuple(tensor.shape) != tuple(shape):
            misshaped.append(f"{pub}: {tuple(sd[pub].shape)} (expected {tuple(shape)})")
            continue
        out[ours] = tensor.to(dtype).contiguous()
    if missing or unknown or misshaped:
        lines = []
        for title, items in (("missing", missing), ("unknown", unknown), ("mis-shaped", misshaped)):
            if items:
                lines.append(f"{len(items)} {title} key(s):")
                lines += [f"  {item}" for item in items]
        raise ConversionError("the checkpoint does not match the TDS-CLIP model inferred from it:\n" + "\n".join(lines))
    return out


def read_class_names(path: str, num_classes: int) -> list[str]:
    """Class names: a text file (one per line), a JSON list, or a JSON object {name: id} (the SSv2
    labels file)."""
    import json

    from .data.annotations import parse_ssv2_labels, ssv2_class_name

    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        names = [ssv2_class_name(n) for n in parse_ssv2_labels(path)] if isinstance(raw, dict) else raw
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"--class-names {path!r}: expected a JSON list of names or an object {{name: id}}")
    else:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    if len(names) != num_classes:
        raise ValueError(f"--class-names {path!r} has {len(names)} names, the model has {num_classes} classes")
    return names


def convert(src: str, dst: str, overrides: list[str] = (), class_names_file: str | None = None, log=print):
    """Converts ``src`` into the model directory ``dst``; returns the model (eval mode). ``overrides``:
    ``key=value`` model config fields that replace the inferred ones."""
    from .config import TDSCLIPConfig, backbone_geometry
    from .config_rules import parse_value as _parse_value
    from .model import TDSCLIP

    sd, info = read_published(src)
    values = infer_config(sd)
    found = values.pop("_found")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. num_frames=16)")
        key, text = item.split("=", 1)
        key = key.strip()
        values[key[len("model."):] if key.startswith("model.") else key] = _parse_value(text)
    if "backbone" not in values:
        raise ConversionError(f"cannot infer the backbone from the tensor shapes ({found}); pass --backbone NAME")
    if values.get("image_size") == backbone_geometry(values["backbone"])[1]:
        values["image_size"] = None  # the backbone's native size
    config = TDSCLIPConfig.from_dict(values)
    names = read_class_names(class_names_file, config.num_classes) if class_names_file else None
    with torch.device("meta"):  # shapes and dtypes of the target model, nothing allocated
        expected = {k: (tuple(v.shape), v.dtype) for k, v in TDSCLIP(config).state_dict().items()}
    state = convert_state_dict(sd, expected)
    model = TDSCLIP(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    model.save_pretrained(dst, class_names=names,
                          extra={"converted_from": os.path.basename(src), "published_epoch": info.get("epoch")})
    log(f"convert: {src} ({len(sd)} tensors, {found}) -> {dst}: {config.backbone}, side_dim {config.side_dim}, "
        f"{config.num_classes} classes, image {config.resolved_image_size}px"
        + ("" if names else " (no --class-names: predict prints class indices)"))
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tdsclip convert", description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 written, 2 bad arguments / refused or mismatched checkpoint")
    p.add_argument("src", help="checkpoint saved by the published TDS-CLIP code (.pth)")
    p.add_argument("dst", help="model directory to write (config.json + model.safetensors)")
    p.add_argument("--class-names", help="class names: text (one per line), JSON list, or SSv2 labels JSON {name: id}")
    p.add_argument("--backbone", help="override the inferred backbone (ViT-B-16, ViT-L-14, tiny, ...)")
    p.add_argument("--side-dim", type=int, help="override the inferred side width")
    p.add_argument("--num-classes", type=int, help="override the inferred class count")
    p.add_argument("--num-frames", type=int, help="T the model was trained with (default 8; config only)")
    p.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="any other model config field (alpha=1.0, pool_kernel=5, ...)")
    args = p.parse_args(argv)
    overrides = [f"{key}={getattr(args, key)}" for key in ("backbone", "side_dim", "num_classes", "num_frames")
                 if getattr(args, key) is not None] + list(args.set_items)
    try:
        convert(args.src, args.dst, overrides, args.class_names)
    except (ConversionError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
