"""The ``tdsclip`` console script.

    tdsclip demo                         make the demo data if absent, train a tiny TDS-CLIP on the CPU, evaluate
    tdsclip train --config ssv2_b16 ...  train (see ``tdsclip train --help``; torchrun for several GPUs)
    tdsclip eval RUN_DIR|CHECKPOINT      top-1/top-5, per-class accuracy, confusion matrix, JSON results
    tdsclip eval CKPT --zero-shot        classify from class names alone (M2-CLIP, DiST; --class-names FILE)
    tdsclip make-demo-data [DIR]         generate the synthetic motion data set
    tdsclip convert SRC DST              published TDS-CLIP checkpoint -> model directory (config.json + safetensors)
    tdsclip predict VIDEO... --model DIR top-k classes of video files with a model directory (or hub id)
    tdsclip export --model DIR OUT.pt2   torch.export of the eval model (tds custom ops kept as ops)
    tdsclip summary ...                  parameter counts / shapes of a model config
    tdsclip configs                      list the shipped configs

Each subcommand forwards its arguments to the module that implements it, so
``tdsclip train ARGS`` ≡ ``python -m tdsclip.train ARGS`` ≡ ``torchrun ... -m tdsclip.train ARGS``.
"""
from __future__ import annotations

import sys

USAGE = __doc__.split("\n\n")[1]


def _train(argv):
    from .train import main
    return main(argv)


def _eval(argv):
    from .eval import main
    return main(argv)


def _demo(argv):
    from .demo import main
    return main(argv)


def _make_demo_data(argv):
    from .data.demo import main
    return main(argv)


def _summary(argv):
    from .engine.config import available_configs, config_path
    from .model.summary import main

    # `--config ssv2_b16` names a shipped config, as for train; tdsclip.model.summary wants a path
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv) and argv[i + 1] in available_configs():
            argv[i + 1] = config_path(argv[i + 1])
        elif arg.startswith("--config=") and arg.split("=", 1)[1] in available_configs():
            argv[i] = "--config=" + config_path(arg.split("=", 1)[1])
    return main(argv)


def _configs(argv):
    from .engine.config import CONFIG_DIR, available_configs
    for name in available_configs():
        print(name)
    print(f"(in {CONFIG_DIR}; pass --config NAME or a YAML path)", file=sys.stderr)
    return 0


def _convert(argv):
    from .convert import main
    return main(argv)


def _predict(argv):
    from .predict import main
    return main(argv)


def _export(argv):
    from .export import main
    return main(argv)


COMMANDS = {"train": _train, "eval": _eval, "demo": _demo, "make-demo-data": _make_demo_data,
            "summary": _summary, "configs": _configs, "convert": _convert, "predict": _predict, "export": _export}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: tdsclip {" + ",".join(COMMANDS) + "} [args]\n\n" + USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from importlib.metadata import version
        print(f"tdsclip {version('tds')}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(cmd, list(COMMANDS), n=1)
        print(f"tdsclip: unknown command {cmd!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
              + f"; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        rc = COMMANDS[cmd](rest)
    except KeyboardInterrupt:
        print("tdsclip: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
