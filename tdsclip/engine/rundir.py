"""The run directory: starting a fresh run where an earlier one left its files.

A fresh run (no ``--resume``) in a directory that holds another run's checkpoints must not mix
with it: its metrics would be appended to the old log, and ``--resume auto`` could later pick the
old run's newer checkpoint. Rather than refuse (annoying when re-running the demo) or delete
(losing a long run by a typo), the earlier run's files are moved into ``previous-<time>/``.

Two trainings must never write one directory at once (the second would archive the first's files
while it runs and overwrite its checkpoints): ``RunDirLock`` makes the second one refuse.
"""
from __future__ import annotations

import glob
import json
import os
import socket
import tempfile
import time
import warnings

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


# ---------------------------------------------------------------------------------------------
# one training per run directory

LOCK_NAME = ".lock"


class RunDirLocked(ValueError):
    """Another live training holds the run directory's lock."""


class StaleLockWarning(UserWarning):
    """A lock left by a training that no longer runs was taken over."""


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux ``/proc``; None elsewhere): tells a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if owner.get("host") != socket.gethostname():
        return True  # cannot check another machine's processes: assume it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = owner.get("start_time")
    return started is None or _start_time(pid) in (None, started)


class RunDirLock:
    """``<out>/.lock``: a JSON file naming the training that writes ``out`` (pid, host, start time).

    Created atomically with ``os.link`` of a complete temporary file, so a reader never sees it
    half-written. A second training into the same directory fails with ``RunDirLocked`` naming the
    holder; a lock whose process is gone (killed with SIGKILL, machine rebooted) is taken over with
    a ``StaleLockWarning``. Released (deleted) by ``release()`` / leaving the ``with`` block.
    """

    def __init__(self, out: str):
        self.out = out
        self.path = os.path.join(out, LOCK_NAME)
        self.held = False

    def acquire(self) -> "RunDirLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": _start_time(os.getpid()),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=self.out)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    owner = self._owner()
                    if owner is not None and _alive(owner):
                        raise RunDirLocked(
                            f"{self.out} is in use by another training (pid {owner['pid']} on host {owner['host']}, "
                            f"since {owner.get('since', '?')}): wait for it to end or choose another --output "
                            f"(if that process is gone, delete {self.path})") from None
                    warnings.warn(f"{self.out}: taking over the lock of a training that no longer runs ("
                                  + (f"pid {owner['pid']} on host {owner['host']}" if owner else "unreadable lock file")
                                  + ")", StaleLockWarning, stacklevel=2)
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
            raise RunDirLocked(f"{self.out}: could not take the lock {self.path} (another training keeps taking it)")
        finally:
            os.unlink(tmp)

    def _owner(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                owner = json.load(f)
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.held = False
            owner = self._owner()
            if owner and owner.get("pid") == os.getpid():
                os.unlink(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
