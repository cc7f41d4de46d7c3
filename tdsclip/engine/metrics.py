"""JSON-lines metrics log and running averages.

One JSON object per line, each with a ``kind`` ("train" per logged step, "epoch" per epoch
summary, "val" per evaluation, "event" for resume / NaN / stop notes) and the global ``step``.
Only rank 0 writes; lines are flushed as they are written so a killed run keeps its log.
"""
from __future__ import annotations

import json
import math
import os


def _clean(value):
    # JSON has no NaN/inf: write them as strings so the file stays valid and the event visible.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    def __init__(self, path: str | None):
        self.path = path
        self._f = None
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step``: on resume, the steps after the checkpoint are redone, and the
        log must not hold them twice."""
        if self.path is None:
            return
        self._f.close()
        kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= step or r.get("kind") == "event"]
        with open(self.path, "w", encoding="utf-8") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, kind: str, step: int, **values) -> None:
        if self._f is None:
            return
        record = {"kind": kind, "step": int(step), **{k: _clean(v) for k, v in values.items()}}
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_jsonl(path: str) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill mid-write
    return records


class Average:
    """Sum / count accumulator (weighted by the number of clips)."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += n

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")
