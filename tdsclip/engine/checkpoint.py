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
import warnings

import torch

CKPT_PATTERN = re.compile(r"^checkpoint_step(\d+)\.pt$")
TMP_PATTERN = ".tmp_*.pt"
FORMAT_VERSION = 1

# Test-only fault injection: called with a stage name ("created": the temporary file exists, empty;
# "written": its bytes are written, not yet renamed) so a test can kill the process mid-write.
_write_hook = None


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and says what to do."""


class ResumeFallbackWarning(UserWarning):
    """``--resume auto`` skipped an unreadable newest checkpoint and resumed from an older one."""


def checkpoint_name(global_step: int) -> str:
    return f"checkpoint_step{global_step:08d}.pt"


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file + fsync + ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; checkpoints get the usual mode
        if _write_hook is not None:
            _write_hook("created")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if _write_hook is not None:
            _write_hook("written")
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
        raise CheckpointError(f"cannot read checkpoint {path!r}: {describe_load_error(exc)}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path!r} is not a tdsclip checkpoint (expected a dict with 'model' and 'config')")
    return state


def describe_load_error(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line, without torch's advice to load with
    ``weights_only=False`` (which would run whatever code the file's pickle names: never do that)."""
    msg = str(exc)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
    if m:
        return (f"it holds pickled Python objects ({m.group(1)}), which tdsclip never loads (loading them "
                "could run code); only files of tensors and plain containers are accepted")
    if "Weights only load failed" in msg:
        return "not a torch.save file of tensors (unreadable or corrupt data)"
    if isinstance(exc, EOFError) or not msg.strip():
        return "the file is empty or truncated"
    if "central directory" in msg or "zip archive" in msg:
        return "the file is truncated or corrupt (not a complete torch.save archive)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):  # e.g. EINVAL from a seek past the end of a cut-off file
        return f"the file is truncated or corrupt ({exc.strerror or exc})"
    first = msg.strip().splitlines()[0]
    return re.split(r"weights_only", first, maxsplit=1)[0].rstrip(" .,(`") or type(exc).__name__


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
        except (ValueError, OSError):
            continue  # cannot happen with atomic writes, but a hand-copied file might be broken
        return path
    return None


def latest_readable(directory: str, what: str) -> str | None:
    """The newest checkpoint of ``directory`` that loads; None when there are no checkpoints.

    Unreadable newer ones are skipped with a ``ResumeFallbackWarning`` naming them; when checkpoints
    exist but none loads, a ``CheckpointError`` names them (never "no checkpoint": a run that has
    one must not restart from scratch, nor be reported as having none). ``what`` starts the messages
    (e.g. "--resume auto").
    """
    unreadable = []
    for _, path in reversed(list_checkpoints(directory)):
        try:
            load_checkpoint(path)
        except (ValueError, OSError) as exc:
            unreadable.append(str(exc))
            continue
        if unreadable:
            warnings.warn(f"{what}: skipping {len(unreadable)} unreadable newer checkpoint(s) ("
                          + "; ".join(unreadable) + f"); using the older {path}", ResumeFallbackWarning, stacklevel=2)
        return path
    if unreadable:
        raise CheckpointError(f"{what}: no readable checkpoint in {directory!r}: " + "; ".join(unreadable)
                              + ". Move the file(s) away to start afresh, or resume from a good copy with --resume PATH")
    return None


def remove_stale_temp_files(directory: str) -> list[str]:
    """Deletes ``.tmp_*.pt`` files a killed checkpoint write left behind (call only while holding the
    run directory's lock: another run's write in progress looks the same)."""
    removed = []
    for path in glob.glob(os.path.join(directory, TMP_PATTERN)):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


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
        return latest_readable(output_dir, "--resume auto")
    if os.path.isdir(resume):
        latest = latest_readable(resume, f"--resume {resume}")
        if latest is None:
            raise FileNotFoundError(f"--resume {resume!r}: no checkpoint_step*.pt in that directory")
        return latest
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"--resume {resume!r}: no such file")
    return resume
