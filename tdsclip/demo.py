"""``tdsclip demo`` (also ``tdsclip train --config demo``): the whole pipeline on a laptop-sized task.

1. makes the demo data set if it is absent (``tdsclip.data.demo``: VP9 videos of a textured patch
   moving left/right or up/down; the classes come in time-reversed pairs) — ``tdsclip demo`` only:
   ``tdsclip train --config demo`` wants it made already, so a mistyped ``data.root`` is an error;
2. trains a tiny TDS-CLIP (random-initialised tiny open_clip ViT, frozen; the side network trained)
   on the CPU with the ``demo`` config;
3. evaluates the final checkpoint on the validation videos (``tdsclip eval``: JSON + confusion matrix);
4. fits the order-blind baseline: a linear classifier on the same frozen backbone's time-averaged
   features, which cannot tell a clip from its time reverse (at most 50 % on this task);
5. prints both accuracies; the last line is machine-readable:
   ``demo: val_top1=<float> baseline_top1=<float> wall_s=<float>``.

Everything is written under ``runtime.output`` (default ``runs/demo``); the data under
``data.root`` (default ``./demo_data``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

TARGET_TOP1 = 90.0      # the demo must reach this validation top-1 ...
BASELINE_LIMIT = 55.0   # ... while the order-blind baseline stays at or below this


def ensure_demo_data(root: str, params: dict, log=print) -> bool:
    """Generates the demo data under ``root`` unless a complete data set is there. True if it made it."""
    if os.path.exists(os.path.join(root, "labels.json")):
        return False
    from .data.demo import make_demo_data

    t0 = time.perf_counter()
    log(f"demo: generating the demo data set in {root} ...")
    info = make_demo_data(root, **params)
    log(f"demo: wrote {info['train']} train + {info['validation']} validation videos in {time.perf_counter() - t0:.1f} s")
    return True


def run_baseline(cfg, checkpoint: str, log=print) -> dict:
    """Linear probe on the frozen backbone of ``checkpoint`` (time-averaged features, single view)."""
    from .engine.distributed import DistInfo, pick_device
    from .engine.linear_probe import linear_probe_top1
    from .engine.video_source import VideoSource, make_loader
    from .eval import load_model_from_checkpoint

    info = DistInfo(device=pick_device(cfg.runtime.device))
    model, cfg, _ = load_model_from_checkpoint(checkpoint, [], info.device)
    src = VideoSource(cfg, info, with_train=True)
    # The probe sees each training video once, un-augmented (val-mode clips of the train split).
    train_plain = make_loader(cfg, info, src.train_loader.dataset, "val", cfg.data.batch_size)
    t0 = time.perf_counter()
    res = linear_probe_top1(model, iter(train_plain), src.val_batches(), cfg.model.num_classes, info.device)
    res["wall_s"] = time.perf_counter() - t0
    return res


def run_demo(cfg, log=print, *, command: str = "tdsclip demo", generate: bool = True) -> int:
    """Trains, evaluates and runs the baseline for a demo-dataset config; returns the exit status.

    ``command``: how the user started it (said in "continue with ..." hints). ``generate``: make the demo
    data when ``data.root`` holds none (``tdsclip demo``); otherwise (``tdsclip train --config demo``) a
    missing data set is an error, so a mistyped ``data.root`` does not silently generate a new one.
    """
    from .engine.signals import StopRequest

    labels = os.path.join(cfg.data.root, "labels.json")
    if not generate and not os.path.exists(labels):
        print(f"demo: error: no demo data set at data.root={cfg.data.root!r} (no {labels}): make one with "
              f"tdsclip make-demo-data {cfg.data.root}, or run tdsclip demo, which makes it", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if os.environ.get("RANK", "0") == "0":
        # before the signal handler is installed: the generator's worker pool is ended with SIGTERM
        ensure_demo_data(cfg.data.root, dict(cfg.data.extra.get("demo", {})), log)
    # installed for the whole demo: a signal during the evaluation still ends with 128 + signal
    with StopRequest() as stop:
        return _run_demo(cfg, log, command, stop, t0)


def _run_demo(cfg, log, command: str, stop, t0: float) -> int:
    from .engine.distributed import DistInfo, cleanup
    from .eval import run_eval
    from .run import run_training, signal_status, training_errors

    got, status = training_errors("demo", lambda: run_training(cfg, log=log, stop=stop))
    if status is not None:
        return status
    result, info = got
    cleanup(info)
    if not info.is_main:
        return 0
    status = signal_status("demo", result, stop, log)
    if result.status != "done" or status is not None:
        log(f"demo: training stopped at step {result.global_step}; continue with "
            f"{command} [same arguments] --resume auto (checkpoint {result.checkpoint})")
        return status or 0
    single = DistInfo(device=info.device)  # evaluation and baseline run in this process only
    summary = run_eval(result.checkpoint, ["eval.views=single"], info=single, log=log)
    base = run_baseline(cfg, result.checkpoint, log)
    wall = time.perf_counter() - t0
    report = {"val_top1": summary["top1"], "val_top5": summary["top5"], "baseline_top1": base["val_top1"],
              "baseline_train_top1": base["train_top1"], "wall_s": wall, "train_wall_s": result.wall_s,
              "steps": result.global_step, "checkpoint": result.checkpoint, "eval_json": summary.get("json"),
              "target_top1": TARGET_TOP1, "baseline_limit": BASELINE_LIMIT,
              "passed": summary["top1"] >= TARGET_TOP1 and base["val_top1"] <= BASELINE_LIMIT}
    with open(os.path.join(cfg.runtime.output, "demo_result.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    trained = "TDS-CLIP (tiny, side network trained)" if cfg.model.arch == "tdsclip" else f"{cfg.model.arch} (tiny)"
    log(f"demo: {trained} val top-1 {summary['top1']:.2f}% "
        f"(target >= {TARGET_TOP1:.0f}%)")
    log(f"demo: order-blind baseline (linear probe on the frozen backbone's time-averaged features, "
        f"{base['num_train']} training videos) val top-1 {base['val_top1']:.2f}% (train {base['train_top1']:.2f}%; "
        f"must stay <= {BASELINE_LIMIT:.0f}%: time-reversed class pairs cap it at 50%, chance is "
        f"{100 / cfg.model.num_classes:.0f}%)")
    log(f"demo: plots in {cfg.runtime.output} (loss.png, accuracy.png, lr.png, {os.path.basename(summary['confusion_png'])}); "
        + ("targets met" if report["passed"] else "TARGETS NOT MET"))
    print(f"demo: val_top1={summary['top1']:.2f} baseline_top1={base['val_top1']:.2f} wall_s={wall:.1f}", flush=True)
    return signal_status("demo", result, stop, log) or 0


def main(argv: list[str] | None = None) -> int:
    from .run import add_train_arguments, resolve_config

    parser = argparse.ArgumentParser(prog="tdsclip demo", description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    parser.set_defaults(config="demo")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = resolve_config(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if cfg.data.dataset != "demo":
        parser.error(f"tdsclip demo needs a config with data.dataset: demo (got {cfg.data.dataset!r}); "
                     "use tdsclip train for other data")
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    return run_demo(cfg)


if __name__ == "__main__":
    sys.exit(main())
