"""``tdsclip predict VIDEO... --model DIR``: the top-k classes of video files.

    tdsclip predict a.webm b.mp4 --model models/ssv2_b16              # one centre view per video
    tdsclip predict a.webm --model org/repo --views multi --top-k 3   # 3 crops x 2 clips, softmax averaged
    tdsclip predict videos/*.mp4 --model DIR --json predictions.json

Each video is decoded and sampled exactly as ``tdsclip eval`` does (docs/model.md §6): ``single`` is
the validation view (segment middles, short side resized, centre crop), ``multi`` the test views
(``--num-clips`` evenly offset clips × ``--num-crops`` crops) whose softmax scores are averaged. The
model directory's config.json gives T, the image size and the class names (indices are printed when
it has none). A file that cannot be read gets a one-line error and the other videos are still run.

Exit status: 0 every video predicted; 1 some video could not be read (the others were predicted);
2 bad arguments or a model directory that does not load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

VIEW_MODES = ("single", "multi")


def video_views(path: str, num_segments: int, image_size: int, views: str = "single", num_clips: int = 2,
                num_crops: int = 3) -> torch.Tensor:
    """uint8 clips (V, T, 5, 3, S, S) of one video, the views eval makes (single: V = 1; multi:
    V = num_clips · num_crops, clip-major). Raises ``VideoError`` for an unreadable file."""
    from .data.annotations import FRAME_TEMPLATE, VideoRecord
    from .data.augment import eval_plan
    from .data.clips import Item, host_clips
    from .data.sampling import clip_frame_indices, test_views
    from .data.video_io import ShortVideo, VideoError, VideoMeta, probe

    record = VideoRecord(path, -1)
    meta = probe(record, FRAME_TEMPLATE)
    if views == "single":
        keys = [(0, 1)]  # the validation view: segment middles, centre crop
    else:
        keys = test_views(num_clips, num_crops)
    out = []
    for clip in sorted({k for k, _ in keys}):
        crops = [c for k, c in keys if k == clip]
        for attempt in range(2):
            if views == "single":
                frames = clip_frame_indices(meta.num_frames, num_segments, "val")
            else:
                frames = clip_frame_indices(meta.num_frames, num_segments, "test", clip_idx=clip, num_clips=num_clips)
            plans = [eval_plan(meta.height, meta.width, image_size, c) for c in crops]
            item = Item(0, clip, record, meta, frames, plans, [-1] * len(plans))
            try:
                out.append(host_clips(item, num_segments, FRAME_TEMPLATE))
                break
            except ShortVideo as e:  # the probe over-counted (damaged tail): sample the frames that decode
                if attempt == 1 or e.decoded < 1:
                    raise VideoError(path, f"only {e.decoded} frames decode") from None
                meta = VideoMeta(e.decoded, meta.height, meta.width, meta.codec)
    return torch.cat(out)


@torch.no_grad()
def predict_video(model, path: str, *, views: str = "single", num_clips: int = 2, num_crops: int = 3,
                  device=None, amp: str = "off", max_views_per_forward: int = 8) -> torch.Tensor:
    """Class probabilities (num_classes,) of one video: softmax per view, averaged over views."""
    from .engine.amp import autocast

    device = torch.device(device or next(model.parameters()).device)
    config = model.config
    clips = video_views(path, config.num_frames, config.resolved_image_size, views, num_clips, num_crops)
    probs = []
    for chunk in clips.split(max_views_per_forward):
        with autocast(amp, device):
            logits = model(chunk.to(device))
        probs.append(logits.float().softmax(-1).cpu())
    return torch.cat(probs).mean(0)


def top_k(probs: torch.Tensor, k: int, class_names) -> list[dict]:
    values, indices = probs.topk(min(k, probs.numel()))
    names = list(class_names or [])
    return [{"class": int(i), "name": names[i] if i < len(names) else str(int(i)), "prob": float(p)}
            for p, i in zip(values.tolist(), indices.tolist())]


def run(videos: list[str], model_dir: str, *, k: int = 5, views: str = "single", num_clips: int = 2,
        num_crops: int = 3, device: str = "auto", amp: str | None = None, fused_ops: bool | None = None,
        out=print, err=None) -> list[dict]:
    """Predicts every video; returns one record per video ({"video", "top_k"} or {"video", "error"})."""
    from .data.video_io import VideoError
    from .engine.distributed import pick_device
    from .hub import from_pretrained

    err = err or (lambda line: print(line, file=sys.stderr))
    dev = pick_device(device, 0)
    overrides = [] if fused_ops is None else [f"fused_ops={str(fused_ops).lower()}"]
    model = from_pretrained(model_dir, device=dev, overrides=overrides)
    amp = amp or ("bf16" if dev.type == "cuda" else "off")
    records = []
    for path in videos:
        try:
            probs = predict_video(model, path, views=views, num_clips=num_clips, num_crops=num_crops, device=dev,
                                  amp=amp)
        except VideoError as exc:
            err(f"predict: {path}: {exc.reason if hasattr(exc, 'reason') else exc}")
            records.append({"video": path, "error": str(getattr(exc, "reason", exc))})
            continue
        best = top_k(probs, k, getattr(model, "class_names", None))
        records.append({"video": path, "top_k": best})
        out(path)
        for rank, entry in enumerate(best, 1):
            out(f"  {rank}. {100 * entry['prob']:6.2f}%  {entry['name']}")
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tdsclip predict", description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 all videos predicted, 1 some video could not be read, "
                                       "2 bad arguments or model")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or frame folders)")
    p.add_argument("--model", required=True, help="model directory (config.json + model.safetensors) or hub id")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--views", choices=VIEW_MODES, default="single",
                   help="single: one centre view; multi: --num-clips x --num-crops views, softmax averaged")
    p.add_argument("--num-clips", type=int, default=2, help="temporal clips for --views multi (SS: 2, K400: 4)")
    p.add_argument("--num-crops", type=int, default=3, help="spatial crops for --views multi")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("bf16", "fp16", "off"), help="default: bf16 on CUDA, off on the CPU")
    fused = p.add_mutually_exclusive_group()
    fused.add_argument("--fused-ops", dest="fused_ops", action="store_true", default=None)
    fused.add_argument("--no-fused-ops", dest="fused_ops", action="store_false")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the predictions as JSON")
    args = p.parse_args(argv)
    if args.top_k < 1:
        p.error(f"--top-k must be >= 1, got {args.top_k}")
    if args.num_clips < 1 or not 1 <= args.num_crops <= 3:
        p.error("--num-clips must be >= 1 and --num-crops in 1..3")
    try:
        records = run(args.videos, args.model, k=args.top_k, views=args.views, num_clips=args.num_clips,
                      num_crops=args.num_crops, device=args.device, amp=args.amp, fused_ops=args.fused_ops)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        directory = os.path.dirname(os.path.abspath(args.json_out))
        os.makedirs(directory, exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "views": args.views, "videos": records}, f, indent=1)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
