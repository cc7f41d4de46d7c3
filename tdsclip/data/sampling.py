"""Temporal sampling: which native frames a clip holds (docs/model.md §1 and §6).

A clip is T segment centres ``i_t`` and, around each, the W = 5 native frames ``i_t-2 .. i_t+2``
clamped to ``[0, n-1]`` (the first / last frame repeats; indices never wrap around).

Segment centres, with ``seg = (n-1)/T``:

* train, rule ``"kinetics"`` (the published Kinetics loader): ``lo_t = round(seg*t)``,
  ``hi_t = round(seg*(t+1))``, ``i_t = min(randint(lo_t, hi_t), n-1)`` (both ends inclusive);
* train, rule ``"segment"`` (the published Something-Something loader, TSN segments; docs/model.md §7):
  ``i_t`` uniform in ``[floor(t*n/T), floor((t+1)*n/T) - 1]``; a video with ``n <= T`` frames gives
  all its frames plus ``T - n`` random repeats, sorted. :func:`train_rule_for` picks the rule of a
  data set kind (``ssv2`` / ``ssv1``: segment, others: kinetics);
* val:   ``i_t = round(seg*t) + int(seg/2)``;
* test, clip k of K: ``i_t = round(seg*t) + int(seg/(K+1)*(k+1))`` (K = 1 reproduces val).

Every index is finally clamped to ``n-1``.

Rounding: ``round`` is round-half-to-even ("banker's rounding"), which is what the published code's
``int(np.round(x))`` does; Python's built-in ``round`` on floats agrees. So ``round(2.5) = 2``,
``round(3.5) = 4``, ``round(7.5) = 8``. ``int()`` truncates (all values here are >= 0).
"""
from __future__ import annotations

import numpy as np

WINDOW = 5  # frames per local window: i-2 .. i+2
MODES = ("train", "val", "test")
TRAIN_RULES = ("segment", "kinetics")
_SEGMENT_KINDS = ("ssv2", "ssv1")  # Something-Something loaders of the published code


def train_rule_for(kind: str) -> str:
    """The published training-time sampling rule of a data set kind (``VideoDataset.kind``)."""
    return "segment" if kind in _SEGMENT_KINDS else "kinetics"


def _round_half_even(x: np.ndarray) -> np.ndarray:
    # np.rint rounds half to even, exactly like np.round(x) / Python round(x) on floats.
    return np.rint(x).astype(np.int64)


def _check_counts(num_frames: int, num_segments: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise TypeError(f"num_frames must be an int, got {type(num_frames).__name__}")
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)):
        raise TypeError(f"num_segments must be an int, got {type(num_segments).__name__}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 (a video with no frames cannot be sampled), got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")


def sample_indices(
    num_frames: int,
    num_segments: int,
    mode: str,
    *,
    clip_idx: int = 0,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    train_rule: str = "kinetics",
) -> np.ndarray:
    """Segment centre frame indices of one clip.

    Args:
        num_frames: n, frames in the video (>= 1). Videos shorter than ``num_segments`` are fine:
            centres repeat.
        num_segments: T.
        mode: "train" (random frame per segment, needs ``rng``), "val" (segment middle) or
            "test" (clip ``clip_idx`` of ``num_clips`` evenly offset clips).
        clip_idx, num_clips: k and K for mode "test".
        rng: numpy Generator for mode "train".
        train_rule: "kinetics" or "segment" (mode "train" only; see the module docstring).

    Returns:
        int64 array (T,) of indices in [0, n-1], non-decreasing.
    """
    _check_counts(num_frames, num_segments)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n, T = int(num_frames), int(num_segments)
    seg = (n - 1) / T
    t = np.arange(T)
    start = _round_half_even(seg * t)
    if mode == "train":
        if rng is None:
            raise ValueError("mode='train' needs rng (a numpy Generator)")
        if train_rule not in TRAIN_RULES:
            raise ValueError(f"train_rule must be one of {TRAIN_RULES}, got {train_rule!r}")
        if train_rule == "segment":
            return _segment_draw(n, T, rng)
        end = _round_half_even(seg * (t + 1))
        idx = rng.integers(start, end + 1)  # inclusive upper end, like random.randint
    else:
        if mode == "val":
            clip_idx, num_clips = 0, 1
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if not 0 <= clip_idx < num_clips:
            raise ValueError(f"clip_idx must be in [0, {num_clips - 1}], got {clip_idx}")
        idx = start + int(seg / (num_clips + 1) * (clip_idx + 1))
    return np.minimum(idx, n - 1).astype(np.int64)


def _segment_draw(n: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """TSN segments: one uniform frame of ``[floor(t*n/T), floor((t+1)*n/T) - 1]`` each (n > T), or all
    n frames plus T - n random repeats, sorted (n <= T)."""
    if n <= T:
        return np.sort(np.concatenate([np.arange(n), rng.integers(0, n, size=T - n)])).astype(np.int64)
    t = np.arange(T)
    lo, hi = t * n // T, (t + 1) * n // T  # hi exclusive; hi > lo since n > T
    return rng.integers(lo, hi).astype(np.int64)


def window_indices(centres, num_frames: int, window: int = WINDOW) -> np.ndarray:
    """The ``window`` native frames around each centre, clamped to [0, n-1] (never wrapped).

    Returns int64 (T, window): row t is ``clamp(c_t - window//2 .. c_t + window//2)``.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    c = np.asarray(centres, dtype=np.int64).reshape(-1, 1)
    offs = np.arange(window, dtype=np.int64) - window // 2
    return np.clip(c + offs, 0, num_frames - 1)


def clip_frame_indices(
    num_frames: int,
    num_segments: int,
    mode: str,
    *,
    clip_idx: int = 0,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    window: int = WINDOW,
    train_rule: str = "kinetics",
) -> np.ndarray:
    """All frame indices a clip needs, flattened in clip order: (T*window,) int64.

    Reshaped to (T, window) it is ``window_indices(sample_indices(...))``; this is the list the decoders get.
    """
    centres = sample_indices(num_frames, num_segments, mode, clip_idx=clip_idx, num_clips=num_clips, rng=rng,
                             train_rule=train_rule)
    return window_indices(centres, num_frames, window).reshape(-1)


def test_views(num_clips: int, num_crops: int = 3) -> list[tuple[int, int]]:
    """(temporal clip k, spatial crop c) of every test view, clip-major: the order views are yielded."""
    if num_clips < 1 or num_crops < 1:
        raise ValueError(f"num_clips and num_crops must be >= 1, got {num_clips}, {num_crops}")
    return [(k, c) for k in range(num_clips) for c in range(num_crops)]


test_views.__test__ = False  # not a pytest test, despite the name
