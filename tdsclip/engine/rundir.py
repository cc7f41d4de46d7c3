"""The run directory: starting a fresh run where an earlier one left its files.

A fresh run (no ``--resume``) in a directory that holds another run's checkpoints must not mix
with it: its metrics would be appended to the old log, and ``--resume auto`` could later pick the
old run's newer checkpoint. Rather than refuse (annoying when re-running the demo) or delete
(losing a long run by a typo), the earlier run's files are moved into ``previous-<time>/``.
"""
from __future__ import annotations

import glob
import os
import time

RUN_FILES = ("checkpoint_step*.pt", "metrics.jsonl", "config.yaml", "loss.png", "accuracy.png", "lr.png",
             "eval_*.json", "confusion_*.png", "demo_result.json")


def archive_previous_run(out: str) -> str | None:
    """Moves an earlier run's files out of ``out``; returns the archive folder, or None if there was no run."""
    if not glob.glob(os.path.join(out, "checkpoint_step*.pt")) and not os.path.exists(os.path.join(out, "metrics.jsonl")):
        return None
    archive = os.path.join(out, "previous-" + time.strftime("%Y%m%d-%H%M%S"))
    n = 1
    while os.path.exists(archive):
        archive = os.path.join(out, f"previous-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    os.makedirs(archive)
    for pattern in RUN_FILES:
        for path in glob.glob(os.path.join(out, pattern)):
            os.replace(path, os.path.join(archive, os.path.basename(path)))
    return archive
