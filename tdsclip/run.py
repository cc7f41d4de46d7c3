"""What ``tdsclip train`` and ``tdsclip demo`` share: the command-line arguments of a training run and
the config they resolve to, the training run itself (``run_training``), and how its errors and signals
become exit statuses. ``tdsclip.train`` (the train command) and ``tdsclip.demo`` both import this
module; neither imports the other's internals (train only hands a demo config to ``demo.run_demo``).

Exit status: 0 done, 3 non-finite loss (or too many skipped updates), 130/143 stopped by SIGINT/SIGTERM
(after writing a checkpoint), 2 bad arguments, config, paths or data.
"""
from __future__ import annotations

import argparse
import os
import sys

EXIT_NONFINITE = 3


def add_train_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. model.side_dim=512 optim.lr=5e-4")
    p.add_argument("--config", "-c", default="demo",
                   help="a shipped config (demo, ssv2_b16, ssv2_l14, ssv1_b16, ssv1_l14, k400_b16, k400_l14) "
                        "or a YAML path (default: demo)")
    p.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override (repeatable); same as a positional KEY=VALUE")
    p.add_argument("--output", "-o", help="run directory: checkpoints, metrics.jsonl, plots (runtime.output)")
    p.add_argument("--resume", help="continue from a checkpoint: a .pt path, a run directory, or 'auto' "
                                    "(the newest readable checkpoint in --output; a fresh start if there is none)")
    p.add_argument("--seed", type=int, help="runtime.seed (data order, initialisation)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (runtime.device)")
    p.add_argument("--amp", choices=("bf16", "fp16", "off"), help="mixed precision (fp16 uses a GradScaler)")
    fused = p.add_mutually_exclusive_group()
    fused.add_argument("--fused-ops", dest="fused_ops", action="store_true", default=None,
                       help="use the tds_kernels fused ops (the default when they are built)")
    fused.add_argument("--no-fused-ops", dest="fused_ops", action="store_false",
                       help="plain PyTorch ops instead of the fused kernels")
    ckp = p.add_mutually_exclusive_group()
    ckp.add_argument("--grad-checkpoint", dest="grad_checkpoint", action="store_true", default=None,
                     help="recompute each side block in backward (less memory, ~30%% more compute)")
    ckp.add_argument("--no-grad-checkpoint", dest="grad_checkpoint", action="store_false")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimiser update (optim.grad_accum)")
    p.add_argument("--epochs", type=int, help="optim.epochs")
    p.add_argument("--batch-size", type=int, help="clips per GPU per step (data.batch_size)")
    p.add_argument("--lr", type=float, help="optim.lr")
    p.add_argument("--data-root", help="data.root")
    p.add_argument("--pretrained", help="model.pretrained: an open_clip tag (openai) or a weights file; 'none' for random")
    p.add_argument("--on-nan", choices=("stop", "skip"),
                   help="a non-finite loss stops the run (default) or skips that update (until "
                        "runtime.max_skipped_steps updates in a row were skipped: then it stops, exit 3)")
    p.add_argument("--max-skipped-steps", type=int,
                   help="--on-nan skip: stop after this many skipped updates in a row (runtime.max_skipped_steps, "
                        "default 10; 0 = never)")
    p.add_argument("--on-bad-video", choices=("skip", "raise"),
                   help="an undecodable, truncated or missing video is skipped with a warning and counted "
                        "(default) or stops the run with exit 2 (runtime.on_bad_video)")
    p.add_argument("--max-steps", type=int, help="stop with a checkpoint after this many optimiser steps")
    p.add_argument("--threads", type=int, help="torch CPU threads per process (runtime.threads; 0 = default)")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def overrides_from_args(args) -> list[str]:
    """The override list: positional and --set items first, then the dedicated flags (which win)."""
    items = list(args.overrides) + list(args.set_items)
    flag_map = [("output", "runtime.output"), ("resume", "runtime.resume"), ("seed", "runtime.seed"),
                ("device", "runtime.device"), ("amp", "runtime.amp"), ("fused_ops", "model.fused_ops"),
                ("grad_checkpoint", "model.grad_checkpoint"), ("grad_accum", "optim.grad_accum"),
                ("epochs", "optim.epochs"), ("batch_size", "data.batch_size"), ("lr", "optim.lr"),
                ("data_root", "data.root"), ("on_nan", "runtime.on_nan"), ("max_steps", "runtime.max_steps"),
                ("threads", "runtime.threads"), ("max_skipped_steps", "runtime.max_skipped_steps"),
                ("on_bad_video", "runtime.on_bad_video")]
    for attr, key in flag_map:
        value = getattr(args, attr, None)
        if value is not None:
            items.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    if getattr(args, "pretrained", None) is not None:
        items.append("model.pretrained=" + ("null" if args.pretrained.lower() in ("none", "null", "") else args.pretrained))
    if getattr(args, "no_progress", False):
        items.append("runtime.progress=false")
    return items


def resolve_config(args):
    from .engine.config import load_config

    for item in list(args.overrides):
        if "=" not in item:
            raise ValueError(f"unexpected argument {item!r}: overrides are KEY=VALUE (e.g. model.side_dim=512)")
    # malformed YAML is a ValueError naming the file and line (tdsclip.config_rules.load_yaml)
    return load_config(args.config, overrides_from_args(args))


def run_training(cfg, *, model=None, data=None, stop=None, fault_hook=None, log=print):
    """Builds what is not given (model, data, process group), trains, and returns ``(FitResult, info)``.
    Used by ``tdsclip train`` and ``tdsclip demo``; tests pass their own model/data."""
    import torch

    from .engine import distributed
    from .engine.rng import seed_everything
    from .engine.signals import StopRequest
    from .engine.trainer import Trainer

    info = distributed.init_distributed(cfg.runtime.device)
    if not info.is_main:
        log = lambda *a, **k: None  # noqa: E731  (only rank 0 talks)
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    # Same seed on every rank for the model's initialisation (DDP also broadcasts rank 0's weights);
    # per-rank streams afterwards, so ranks augment differently.
    seed_everything(cfg.runtime.seed)
    if model is None:
        model = build_training_model(cfg, log)
    seed_everything(cfg.runtime.seed + 7919 * info.rank)
    if data is None:
        from .engine.video_source import build_train_source

        data = build_train_source(cfg, info)
    if hasattr(model, "set_class_names"):  # text-conditioned heads (tdsclip.archs model contract)
        model.set_class_names(list(data.class_names))
    out = cfg.runtime.output
    lock, resume, error = None, None, None
    if info.is_main:
        try:
            lock, resume = _prepare_run_dir(cfg, log)
        except (ValueError, OSError) as exc:
            error = exc
    # every rank learns rank 0's verdict, so none waits forever for a rank that gave up
    resume, message = distributed.broadcast_object((resume, None if error is None else str(error)), info)
    if error is not None:
        raise error
    if message is not None:
        raise ValueError(message)
    try:
        stop = stop or StopRequest()
        trainer = Trainer(cfg, model, data, info, log=log, stop=stop, fault_hook=fault_hook)
        if resume:
            trainer.load(resume)
            log(f"train: resumed from {resume} at epoch {trainer.epoch + 1}, step {trainer.global_step}")
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        log(f"train: {cfg.name}: {n_train / 1e6:.3f} M trainable of {n_all / 1e6:.3f} M parameters; "
            f"{trainer.steps_per_epoch} steps/epoch x {cfg.optim.epochs} epochs; batch {cfg.data.batch_size} x "
            f"{info.world_size} rank(s) x accum {cfg.optim.grad_accum}; device {info.device}; amp {cfg.runtime.amp}; "
            f"fused ops {'on' if cfg.model.fused_ops else 'off'}; output {out}")
        with stop:
            result = trainer.fit()
    finally:
        if lock is not None:
            lock.release()
    return result, info


def _prepare_run_dir(cfg, log):
    """Rank 0: creates and locks the output directory, picks the checkpoint to resume from, archives an
    earlier run's files for a fresh start, writes config.yaml. Returns (lock, resume path or None)."""
    import warnings

    from .engine.checkpoint import remove_stale_temp_files, resolve_resume
    from .engine.rundir import RunDirLock, archive_previous_run

    out = cfg.runtime.output
    try:
        os.makedirs(out, exist_ok=True)
        lock = RunDirLock(out)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lock.acquire()
    except OSError as exc:
        raise ValueError(f"output directory {out!r} cannot be created or written: "
                         f"{exc.strerror or exc} (choose another --output)") from None
    for w in caught:
        print(f"train: warning: {w.message}", file=sys.stderr)
    try:
        for path in remove_stale_temp_files(out):  # only now: the lock says no other run is writing here
            log(f"train: removed {path}, a partial checkpoint left by a training that was killed while writing it")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resume = resolve_resume(cfg.runtime.resume, out)
        for w in caught:
            print(f"train: warning: {w.message}", file=sys.stderr)
        if cfg.runtime.resume == "auto" and resume is None:
            log(f"train: --resume auto: no checkpoint in {out}, starting from scratch")
        if resume is None:
            archived = archive_previous_run(out)
            if archived:
                hint = ("" if cfg.runtime.resume == "auto"
                        else " (pass --resume auto to continue a run instead)")
                log(f"train: {out} held an earlier run: moved its files to {archived}{hint}")
        with open(os.path.join(out, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(cfg.to_yaml())
    except BaseException:
        lock.release()
        raise
    return lock, resume


def build_training_model(cfg, log=print):
    """The model of ``cfg.model`` (any architecture); warns when fused ops were asked for but cannot run fused here."""
    from .archs import build_model as _build

    mcfg = cfg.model_config()
    if mcfg.fused_ops:
        import tds_kernels

        if not tds_kernels.has_extension():
            log(f"train: note: fused ops requested but tds_kernels._C is not built ({tds_kernels.load_error()}); "
                "the ops use their Triton/reference backends.")
    pretrained = getattr(mcfg, "pretrained", None)
    try:
        return _build(mcfg)
    except Exception as exc:  # noqa: BLE001 - a bad weights file is a bad argument (exit 2), not a traceback
        if not (pretrained and os.path.isfile(pretrained)):
            raise
        from .engine.checkpoint import describe_load_error

        raise ValueError(f"--pretrained {pretrained!r}: cannot use weights from it: "
                         f"{describe_load_error(exc)}") from exc


def training_errors(prog: str, run):
    """Runs ``run()``; returns (its result, None) or (None, exit status) after printing the error in one
    line: 3 for a non-finite loss, 2 for bad paths, settings, files or videos (the message says what to
    fix; TDSCLIP_DEBUG=1 re-raises for the traceback)."""
    from tdsclip.data.video_io import VideoError

    from .engine.trainer import NonFiniteLossError

    try:
        return run(), None
    except NonFiniteLossError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None, EXIT_NONFINITE
    except (ValueError, OSError, VideoError) as exc:
        if os.environ.get("TDSCLIP_DEBUG"):
            raise
        bad_video = (" (--on-bad-video raise; --on-bad-video skip leaves such videos out)"
                     if isinstance(exc, VideoError) else "")
        print(f"{prog}: error: {exc}{bad_video} (TDSCLIP_DEBUG=1 shows the traceback)", file=sys.stderr)
        return None, 2


def signal_status(prog: str, result, stop, log=print) -> int | None:
    """128 + signal when a SIGINT/SIGTERM stopped the run or arrived after its final checkpoint, else None."""
    signum = result.signal if result.status == "stopped" and result.signal is not None else stop.signum
    if signum is None:
        return None
    if result.signal is None:
        log(f"{prog}: {stop.name} received after the final checkpoint {result.checkpoint}: stopping")
    return 128 + int(signum)  # the shell convention for "killed by this signal"
