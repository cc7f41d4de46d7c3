"""The live progress bar: clips/s, loss, lr and ETA (tqdm), on rank 0 only."""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


class Progress:
    def __init__(self, total: int, initial: int, desc: str, enabled: bool, main: bool = True):
        """``enabled``: draw the bar; ``main``: this is the rank that prints (``write`` still prints
        without a bar, so epoch summaries are not lost with ``--no-progress``)."""
        self.main = main
        # tqdm's own ETA uses the steps of this session only, so a resumed run's estimate is honest.
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                        file=sys.stderr, mininterval=0.5, unit="step")
        self._t0 = time.perf_counter()
        self._clips = 0

    def update(self, clips: int, loss: float, lr: float, top1: float | None = None) -> None:
        self._clips += clips
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        post = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "clips/s": f"{self._clips / elapsed:.1f}"}
        if top1 is not None:
            post["top1"] = f"{top1:.1f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def write(self, msg: str) -> None:
        if not self.bar.disable:
            self.bar.write(msg, file=sys.stderr)
        elif self.main:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()

    @property
    def clips_per_s(self) -> float:
        return self._clips / max(time.perf_counter() - self._t0, 1e-9)
