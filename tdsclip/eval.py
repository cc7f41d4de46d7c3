"""``tdsclip eval`` / ``python -m tdsclip.eval``: evaluate a trained checkpoint.

    tdsclip eval runs/ssv2_b16                       # newest checkpoint of a run, the config's protocol
    tdsclip eval CKPT.pt --views multi --num-clips 2 # 3 crops x 2 clips, softmax scores averaged per video
    tdsclip eval CKPT.pt --views single              # one centre crop, one clip
    tdsclip eval models/ssv2_b16 --data-root DATA     # a model directory (tdsclip convert, <run>/best)
    torchrun --nproc_per_node 4 -m tdsclip.eval CKPT.pt ...
    tdsclip eval CKPT.pt --zero-shot --split other.txt --class-names names.txt
                                                     # zero-shot: classes from their names alone (M2-CLIP, DiST)

Writes ``eval_<split>_<views>.json`` (top-1, top-5, mean class accuracy, per-class accuracy, the
confusion matrix, the protocol) and ``confusion_<split>_<views>.png`` beside the checkpoint (or in
``--output``), and prints one summary line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


@torch.no_grad()
def collect_views(model, batches, num_classes: int, device, amp: str, *, max_views_per_forward: int = 64):
    """Runs ``model`` over ``(clips, labels, video_ids)`` batches — clips ``(B, T, 5, 3, H, W)`` (one view
    per row) or ``(B, V, T, 5, 3, H, W)`` (V views per video) — and returns a ViewAccumulator."""
    from .engine.amp import autocast
    from .engine.evaluation import ViewAccumulator

    acc = ViewAccumulator(num_classes)
    model.eval()
    for batch in batches:
        clips, labels = batch[0], batch[1]
        ids = batch[2] if len(batch) > 2 else None
        if ids is None:
            raise ValueError("evaluation batches must carry video ids: (clips, labels, video_ids)")
        grouped = clips.dim() == 7
        flat = clips.flatten(0, 1) if grouped else clips
        logits = []
        for chunk in flat.split(max_views_per_forward):
            with autocast(amp, device):
                logits.append(model(chunk.to(device, non_blocking=True)).float().cpu())
        logits = torch.cat(logits)
        if grouped:
            acc.add_grouped(logits.view(clips.shape[0], clips.shape[1], -1), labels, ids)
        else:
            acc.add_views(logits, labels, ids)
    return acc


def evaluate_model(model, batches, num_classes: int, class_names, device, amp: str, info=None) -> dict:
    """Collects views on every rank, merges them on all ranks, and summarises (see engine.evaluation)."""
    from .engine.distributed import DistInfo, gather_objects
    from .engine.evaluation import summarise

    info = info or DistInfo(device=device)
    acc = collect_views(model, batches, num_classes, device, amp)
    if info.enabled:
        states = gather_objects(acc.state(), info)
        merged = type(acc)(num_classes)
        for st in states:
            merged.merge(st)
        acc = merged
    ids, probs, labels, views = acc.result()
    summary = summarise(probs, labels, class_names)
    summary["views_per_video"] = sorted(set(views.tolist()))
    return summary


def write_results(summary: dict, out_dir: str, tag: str, extra: dict) -> tuple[str, str]:
    from .engine.plots import plot_confusion

    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, f"eval_{tag}.json")
    png_path = os.path.join(out_dir, f"confusion_{tag}.png")
    record = {**extra, **summary}
    tmp = json_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, json_path)
    plot_confusion(summary["confusion_matrix"], summary["class_names"], png_path,
                   title=f"{extra.get('name', '')} {tag}: top-1 {summary['top1']:.1f}%")
    return json_path, png_path


def checkpoint_config(state: dict, overrides: list[str]):
    """The TrainConfig stored in a checkpoint, with ``overrides`` applied (e.g. data paths on another
    machine, model.fused_ops=false)."""
    import copy

    from .engine.config import from_dict
    from .engine.overrides import apply_overrides

    return from_dict(apply_overrides(copy.deepcopy(state["config"]), overrides))


def load_model_from_checkpoint(path: str, overrides: list[str], device, state: dict | None = None):
    """(model with the checkpoint's weights, TrainConfig, checkpoint dict)."""
    from .archs import build_model
    from .engine.checkpoint import load_checkpoint
    from .engine.state import load_checkpoint_model_state

    state = state if state is not None else load_checkpoint(path)
    cfg = checkpoint_config(state, overrides)
    model = build_model(cfg.model_config())
    load_checkpoint_model_state(model, state, cfg.model.to_dict(), path)
    return model.to(device).eval(), cfg, state


class ZeroShotClassifier(torch.nn.Module):
    """``model(clips)`` → ``model.zero_shot_logits(clips, class_names)``: a zero-shot model as a classifier
    of ``class_names`` for the evaluation loop (tdsclip.archs model contract)."""

    def __init__(self, model: torch.nn.Module, class_names: list[str]):
        super().__init__()
        self.model, self.class_names = model, list(class_names)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model.zero_shot_logits(clips, self.class_names)


def read_class_names(path: str) -> list[str]:
    """Class names indexed by label id: a text file with one name per line (line i = label i), or an
    SSv2-style JSON label map ``{"name": "id"}``."""
    if path.endswith(".json"):
        from .data.annotations import parse_ssv2_labels

        return parse_ssv2_labels(path)
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"--class-names: file not found: {path}") from None
    if not names:
        raise ValueError(f"--class-names: {path} holds no class names (one per line)")
    return names


def zero_shot_source(cfg, info, class_names: list[str] | None):
    """(evaluation data, class names) for a zero-shot run: the names given, else the data set's own (a
    list-format set has none: --class-names is then required). The data set may have any number of
    classes; only its labels must index the names."""
    import copy

    from .engine.video_source import build_eval_source, build_split

    if class_names is None:
        eval_list = cfg.eval.split if cfg.eval.split != "val" else ""
        class_names = build_split(cfg, "val", eval_list).classes
        if not class_names:
            raise ValueError("--zero-shot: this data set carries no class names (a list file has only label ids): "
                             "pass --class-names FILE (one name per line, line i = label i)")
    cfg = copy.deepcopy(cfg)
    cfg.model.num_classes = len(class_names)  # the labels of this data set index class_names
    return build_eval_source(cfg, info), list(class_names)


def zero_shot_setup(model, cfg, info, data, class_names_file: str | None):
    """(``ZeroShotClassifier``, evaluation data, class names) of ``tdsclip eval --zero-shot``: the one
    zero-shot path of every architecture with ``zero_shot_logits`` (tdsclip.archs contract: m2clip, dist)."""
    if not callable(getattr(model, "zero_shot_logits", None)) or not getattr(model, "supports_zero_shot", True):
        raise ValueError(f"--zero-shot: this model (arch {cfg.model.arch!r}) has no zero-shot classifier "
                         "(zero_shot_logits from class names): arch m2clip, or arch dist with model.head=text")
    names = read_class_names(class_names_file) if class_names_file else None
    if data is None:
        data, class_names = zero_shot_source(cfg, info, names)
    else:
        class_names = names or list(data.class_names)
    return ZeroShotClassifier(model, class_names), data, class_names


def add_eval_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("checkpoint", help="a checkpoint .pt, a run directory (its newest checkpoint), or a model "
                                      "directory (config.json + model.safetensors)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the stored config (data.root=...)")
    p.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--views", choices=("single", "multi"), help="single view, or num_crops x num_clips (eval.views)")
    p.add_argument("--num-clips", type=int, help="temporal clips per video for --views multi (eval.num_clips)")
    p.add_argument("--num-crops", type=int, help="spatial crops per clip for --views multi (eval.num_crops)")
    p.add_argument("--split", help="which annotation list: val (data.val_list) or a path to a list file")
    p.add_argument("--data-root", help="data.root")
    p.add_argument("--batch-size", type=int, help="videos per step (eval.batch_size)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("bf16", "fp16", "off"))
    fused = p.add_mutually_exclusive_group()
    fused.add_argument("--fused-ops", dest="fused_ops", action="store_true", default=None)
    fused.add_argument("--no-fused-ops", dest="fused_ops", action="store_false")
    p.add_argument("--output", "-o", help="where the JSON and PNG go (default: beside the checkpoint)")
    p.add_argument("--zero-shot", action="store_true",
                   help="classify from the class names alone (models with zero_shot_logits: arch m2clip, "
                        "arch dist with model.head=text)")
    p.add_argument("--class-names", metavar="FILE",
                   help="with --zero-shot: class names, one per line (line i = label i), or a JSON {name: id} map; "
                        "default: the data set's own names")
    return p


def eval_overrides(args) -> list[str]:
    items = list(args.overrides) + list(args.set_items)
    for attr, key in [("views", "eval.views"), ("num_clips", "eval.num_clips"), ("num_crops", "eval.num_crops"),
                      ("split", "eval.split"), ("data_root", "data.root"), ("batch_size", "eval.batch_size"),
                      ("device", "runtime.device"), ("amp", "runtime.amp"), ("fused_ops", "model.fused_ops")]:
        value = getattr(args, attr, None)
        if value is not None:
            items.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return items


def run_eval(checkpoint: str, overrides: list[str], output: str | None = None, data=None, log=print,
             info=None, zero_shot: bool = False, class_names_file: str | None = None) -> dict:
    """Evaluates ``checkpoint`` (path or run dir); returns the summary (with the file paths) on every rank.
    ``info``: an existing DistInfo (default: join the torchrun process group, if any). ``zero_shot``:
    classify by ``model.zero_shot_logits`` from the class names (``class_names_file`` or the data set's)."""
    from .engine import distributed
    from .engine.checkpoint import latest_readable, load_checkpoint
    from .hub import WEIGHTS_NAME, checkpoint_state, is_model_dir

    t0 = time.perf_counter()
    if is_model_dir(checkpoint):  # a model directory (tdsclip convert / save_pretrained / <run>/best)
        path, state = os.path.join(checkpoint, WEIGHTS_NAME), checkpoint_state(checkpoint)
    else:
        path = latest_readable(checkpoint, f"eval {checkpoint}") if os.path.isdir(checkpoint) else checkpoint
        if path is None:
            raise FileNotFoundError(f"{checkpoint!r} is a directory without checkpoint_step*.pt files")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
        state = load_checkpoint(path)
    own_group = info is None
    if own_group:
        info = distributed.init_distributed(checkpoint_config(state, overrides).runtime.device)
    model, cfg, state = load_model_from_checkpoint(path, overrides, info.device, state)
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    num_classes = cfg.model.num_classes
    if zero_shot:  # the model becomes a classifier of the given (or the data set's) class names
        model, data, class_names = zero_shot_setup(model, cfg, info, data, class_names_file)
        num_classes = len(class_names)
    if data is None:
        from .engine.video_source import build_eval_source

        data = build_eval_source(cfg, info)
    views = cfg.eval.views
    if not zero_shot:
        class_names = list(state.get("class_names") or getattr(data, "class_names", []) or [])
    summary = evaluate_model(model, data.eval_batches(views), num_classes, class_names,
                             info.device, cfg.runtime.amp, info)
    protocol = ({"views": "single", "crops": 1, "clips": 1} if views == "single"
                else {"views": "multi", "crops": cfg.eval.num_crops, "clips": cfg.eval.num_clips})
    split_name = os.path.splitext(os.path.basename(cfg.eval.split))[0] or "val"  # "val", or a list file's name
    tag = f"{split_name}_{views}" if views == "single" else f"{split_name}_{cfg.eval.num_crops}x{cfg.eval.num_clips}"
    tag = f"zeroshot_{tag}" if zero_shot else tag
    extra = {"checkpoint": os.path.abspath(path), "name": cfg.name, "global_step": int(state.get("global_step", 0)),
             "epoch": int(state.get("epoch", 0)), "protocol": protocol, "split": cfg.eval.split,
             "wall_s": time.perf_counter() - t0, "zero_shot": zero_shot}
    if info.is_main:
        json_path, png_path = write_results(summary, output or os.path.dirname(os.path.abspath(path)), tag, extra)
        summary.update({"json": json_path, "confusion_png": png_path})
        log(f"eval{' (zero-shot)' if zero_shot else ''}: {cfg.name} step {extra['global_step']} on {summary['num_videos']} videos "
            f"({protocol['crops']} crop(s) x {protocol['clips']} clip(s)): top-1 {summary['top1']:.2f}% "
            f"top-5 {summary['top5']:.2f}% mean-class {summary['mean_class_top1']:.2f}% -> {json_path}")
    summary.update(extra)
    if own_group:
        distributed.cleanup(info)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = add_eval_arguments(argparse.ArgumentParser(prog="tdsclip eval", description=__doc__.split("\n\n")[0]))
    args = parser.parse_intermixed_args(argv)
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"unexpected argument {item!r}: overrides are KEY=VALUE")
    if args.class_names and not args.zero_shot:
        parser.error("--class-names needs --zero-shot")
    try:
        run_eval(args.checkpoint, eval_overrides(args), args.output, zero_shot=args.zero_shot,
                 class_names_file=args.class_names)
    except (ValueError, TypeError, OSError) as exc:  # bad paths, files or settings: the message says what to fix
        if os.environ.get("TDSCLIP_DEBUG"):
            raise
        print(f"eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
