"""``tdsclip train`` / ``python -m tdsclip.train``: train TDS-CLIP from a YAML config.

    tdsclip train --config ssv2_b16 data.root=/data/ssv2 ... [--set key=value ...] [flags]
    torchrun --nproc_per_node 4 -m tdsclip.train --config ssv2_b16 ...     (DDP: NCCL on GPUs, Gloo on CPUs)

Precedence: the YAML (with its ``base:`` chain) < ``key=value`` overrides (positional or ``--set``)
< the dedicated flags below. Exit status: 0 done, 3 non-finite loss (or too many skipped updates),
130/143 stopped by SIGINT/SIGTERM (after writing a checkpoint; continue with ``--resume auto``), 2 bad
arguments, config, paths or data (also: another training runs in the output directory).
"""
from __future__ import annotations

import argparse
import sys

from .run import add_train_arguments, resolve_config, run_training, signal_status, training_errors


def main(argv: list[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(prog="tdsclip train", description=__doc__.split("\n\n")[0]))
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = resolve_config(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if cfg.data.dataset == "demo":
        from .demo import run_demo  # the demo config trains, evaluates and runs the baseline

        # only `tdsclip demo` makes missing demo data: here a mistyped data.root must be an error
        return run_demo(cfg, command="tdsclip train --config " + args.config, generate=False)
    return train_and_report(cfg)


def train_and_report(cfg) -> int:
    from .engine.distributed import cleanup
    from .engine.signals import StopRequest

    # installed for the whole command: a signal after training (while reporting) still ends with 128 + signal
    with StopRequest() as stop:
        got, status = training_errors("train", lambda: run_training(cfg, stop=stop))
        if status is not None:
            return status
        result, info = got
        try:
            if info.is_main:
                val = result.val or {}
                print(f"train: {result.status} after {result.global_step} steps ({result.epoch} epochs) in "
                      f"{result.wall_s:.1f} s; checkpoint {result.checkpoint}"
                      + (f"; val top-1 {val['top1']:.2f}% top-5 {val['top5']:.2f}%" if val.get("num") else ""))
        finally:
            cleanup(info)
        status = signal_status("train", result, stop)
    return 0 if status is None else status


if __name__ == "__main__":
    sys.exit(main())
