"""SIGTERM / SIGINT → "checkpoint and stop at the next step boundary".

A cluster scheduler (or Ctrl-C) sends SIGTERM/SIGINT; instead of dying mid-step, the handler sets a
flag that the training loop checks after each optimiser step (all-reduced across ranks, so every
rank stops at the same step), writes a checkpoint and exits. A second SIGINT while the first one is
being handled raises KeyboardInterrupt as usual, so a stuck run can still be killed.
"""
from __future__ import annotations

import signal
import threading


class StopRequest:
    def __init__(self):
        self.signum: int | None = None   # the signal received, if the stop came from one
        self.requested = False
        self._previous = {}
        self._depth = 0

    def request(self, signum: int | None = None) -> None:
        """Asks for a stop at the next step boundary (``runtime.max_steps`` uses it without a signal)."""
        self.requested = True
        if signum is not None:
            self.signum = signum

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the step to finish
        self.request(signum)

    def install(self) -> "StopRequest":
        # Nested installs (the command around the training, the training itself) keep the outer one:
        # a signal arriving after training ended, while the command still reports or evaluates, is
        # still recorded and turns into exit 128 + signal instead of killing the process silently.
        self._depth += 1
        # Signal handlers can only be installed from the main thread (not, e.g., inside a test runner thread).
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def uninstall(self) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth:
            return
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.uninstall()
        return False

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""
