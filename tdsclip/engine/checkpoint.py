"""Training checkpoints: atomic writes, safe loads, and finding the latest one.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python containers
(model / optimiser / schedule / scaler state dicts, per-rank RNG states, epoch and step counters,
the run's config as a plain dict), so that ``torch.load(path, weights_only=True)`` reads it:
no pickled classes, nothing executed on load.

It is written to a temporary file in the same directory, flushed to disk, then renamed over the
final name with ``os.replace`` (atomic on POSIX), so a crash or a kill mid-write leaves either the
previous checkpoint or the new one, never a truncated file under a checkpoint's name.
"""
from __future__ import annotations

import glob
import os
import re
import tempfile

import torch

CKPT_PATTERN = re.compile(r"^checkpoint_step(\d+)\.pt$")
FORMAT_VERSION = 1


def checkpoint_name(global_step: int) -> str:
    return f"checkpoint_step{global_step:08d}.pt"


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file + fsync + ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; checkpoints get the usual mode
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Loads a checkpoint with ``weights_only=True``; a clear error if it is not one of ours."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, foreign or unsafe file
        raise ValueError(f"cannot load checkpoint {path!r} with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path!r} is not a tdsclip checkpoint (expected a dict with 'model' and 'config')")
    return state


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """(global_step, path) of the checkpoints in ``directory``, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, "checkpoint_step*.pt")):
        m = CKPT_PATTERN.match(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def find_latest(directory: str) -> str | None:
    """The newest checkpoint in ``directory`` that loads, or None when there is none."""
    for _, path in reversed(list_checkpoints(directory)):
        try:
            load_checkpoint(path)
        except (ValueError, FileNotFoundError):
            continue  # cannot happen with atomic writes, but a hand-copied file might be broken
        return path
    return None


def prune_checkpoints(directory: str, keep: int, protect: tuple[str, ...] = ()) -> None:
    """Deletes all but the ``keep`` newest checkpoints (``keep <= 0`` keeps everything)."""
    if keep <= 0:
        return
    ckpts = list_checkpoints(directory)
    for _, path in ckpts[:-keep]:
        if os.path.abspath(path) not in {os.path.abspath(p) for p in protect}:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def resolve_resume(resume: str | None, output_dir: str) -> str | None:
    """``--resume``: None/"" → no resume; "auto" → the latest in ``output_dir`` (None if none); else a path."""
    if not resume:
        return None
    if resume == "auto":
        return find_latest(output_dir)
    if os.path.isdir(resume):
        latest = find_latest(resume)
        if latest is None:
            raise FileNotFoundError(f"--resume {resume!r}: no checkpoint_step*.pt in that directory")
        return latest
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"--resume {resume!r}: no such file")
    return resume
