"""``VideoDataset`` (records + class names + flip label map) and ``build_dataset``.

``build_dataset`` resolves a dataset's standard file layout, parses its annotations, and checks
up front that the files it names exist: missing ones are reported once with their count and the
first few names, then dropped (``on_error="skip"``) or raised as ``FileNotFoundError``
(``on_error="raise"``).

Horizontal flip and labels: flipping a "left to right" video makes it "right to left", so the
train augmentation swaps such labels. The pairs come from, in order: the ``flip_pairs`` argument;
a ``flip_pairs.json`` list of ``[a, b]`` pairs next to the annotation files (the demo data writes
one); for SSv2 with its 174 classes, the published pairs 86<->87, 93<->94, 166<->167; for SSv1,
the classes whose names differ only by "left" <-> "right"; otherwise none (a plain flip, as for
Kinetics).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .annotations import (
    FRAME_TEMPLATE,
    VideoRecord,
    parse_kinetics,
    SSV1_FRAME_TEMPLATE,
    parse_list_file,
    parse_ssv1,
    parse_ssv2,
)

SSV2_FLIP_PAIRS = ((86, 87), (93, 94), (166, 167))
SSV2_NUM_CLASSES = 174
FORMATS = ("ssv2", "ssv1", "kinetics", "list")
ALIASES = {"k400": "kinetics", "kinetics400": "kinetics", "demo": "ssv2"}  # the demo data is SSv2-style
MISSING_SHOWN = 5  # how many missing names a report lists


class MissingFilesWarning(UserWarning):
    """A dataset names files that do not exist (they were dropped)."""


@dataclass
class VideoDataset:
    """Videos of one split.

    records: the videos; classes: class names (index = label id) or None when unknown;
    flip_pairs: label pairs swapped by a horizontal flip; kind: "ssv2" / "kinetics" / "list",
    which selects the default augmentation and test clip count; frame_template: file names inside
    frame folders.
    """

    records: list
    classes: Optional[list] = None
    flip_pairs: tuple = ()
    kind: str = "list"
    frame_template: str = FRAME_TEMPLATE
    missing: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> VideoRecord:
        return self.records[i]

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return max((r.label for r in self.records), default=-1) + 1

    def flip_label_map(self) -> np.ndarray:
        """int64 (num_classes,): label after a horizontal flip."""
        m = np.arange(max(self.num_classes, 1), dtype=np.int64)
        for a, b in self.flip_pairs:
            if max(a, b) >= len(m):
                raise ValueError(f"flip pair ({a}, {b}) names a label >= num_classes={len(m)}")
            m[a], m[b] = b, a
        return m


def _first_existing(candidates: Sequence[str], what: str) -> str:
    for c in candidates:
        if os.path.exists(c):
            return c
    locked = _unreadable_dirs([VideoRecord(c, -1) for c in candidates])
    if locked:
        raise PermissionError(f"{what}: cannot read the directory {locked[0]} (permission denied)")
    raise FileNotFoundError(f"{what} not found; looked for: {', '.join(candidates)}")


def _check_pairs(pairs) -> tuple:
    out = []
    for p in pairs:
        if len(p) != 2 or p[0] == p[1]:
            raise ValueError(f"flip_pairs entries must be pairs of two different labels, got {p!r}")
        out.append((int(p[0]), int(p[1])))
    seen = [x for p in out for x in p]
    if len(seen) != len(set(seen)):
        raise ValueError(f"a label appears in more than one flip pair: {out}")
    return tuple(out)


def _flip_pairs(explicit, annotation_dir: str, kind: str, num_classes: int, classes=None) -> tuple:
    if explicit is not None:
        return _check_pairs(explicit)
    side = os.path.join(annotation_dir, "flip_pairs.json")
    if os.path.exists(side):
        with open(side, encoding="utf-8") as f:
            return _check_pairs(json.load(f))
    if kind == "ssv2" and num_classes == SSV2_NUM_CLASSES:
        return SSV2_FLIP_PAIRS
    if kind == "ssv1" and classes:
        return left_right_pairs(classes)
    return ()


def left_right_pairs(classes: Sequence[str]) -> tuple:
    """Label pairs whose names differ only by swapping the words "left" and "right"."""
    index = {c: i for i, c in enumerate(classes)}
    pairs = []
    for i, c in enumerate(classes):
        words = c.split(" ")
        if "left" not in words and "right" not in words:
            continue
        other = " ".join({"left": "right", "right": "left"}.get(w, w) for w in words)
        j = index.get(other)
        if j is not None and j > i:
            pairs.append((i, j))
    return tuple(pairs)


def report_missing(records: list, on_error: str, what: str) -> tuple[list, list]:
    """Split records into (present, missing); warn or raise once when any are missing."""
    present, missing = [], []
    for r in records:
        (present if os.path.exists(r.path) else missing).append(r)
    if missing:
        locked = _unreadable_dirs(missing)
        if locked:
            msg = (f"{what}: cannot read the director{'y' if len(locked) == 1 else 'ies'} "
                   f"{', '.join(locked[:MISSING_SHOWN])} (permission denied), so {len(missing)} of {len(records)} "
                   "files cannot be checked: fix the permissions")
            raise PermissionError(msg)
        names = ", ".join(r.path for r in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        msg = f"{what}: {len(missing)} of {len(records)} files are missing: {names}{more}"
        if on_error == "raise":
            raise FileNotFoundError(msg)
        warnings.warn(msg + " (dropped)", MissingFilesWarning, stacklevel=3)
    return present, missing


def _unreadable_dirs(records: list) -> list:
    """Directories (of the records' paths, or above them) this process may not search: files there
    look missing to ``os.path.exists`` although they may well be there."""
    locked = []
    for d in dict.fromkeys(os.path.dirname(os.path.abspath(r.path)) for r in records):
        while d and not os.path.isdir(d) and os.path.dirname(d) != d:
            d = os.path.dirname(d)
        if os.path.isdir(d) and not os.access(d, os.R_OK | os.X_OK):
            locked.append(d)
    return list(dict.fromkeys(locked))


def build_dataset(
    format: str,
    split: str = "train",
    root: str = ".",
    *,
    labels_file: Optional[str] = None,
    list_file: Optional[str] = None,
    video_dir: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    flip_pairs=None,
    frame_template: str = FRAME_TEMPLATE,
    on_error: str = "skip",
) -> VideoDataset:
    """Parse a dataset split.

    Args:
        format: "ssv2", "ssv1" (frame folders), "kinetics" or "list"; aliases "k400" (kinetics) and
            "demo" (ssv2: ``tdsclip.data.demo`` writes SSv2-style files).
        split: "train", "val"/"validation" or "test".
        root: dataset directory; default file names below are looked up in it.
        labels_file: SSv2 label map (default ``labels.json`` or ``something-something-v2-labels.json``);
            SSv1 class list (``labels.csv`` or ``something-something-v1-labels.csv``).
        list_file: the split's list (SSv2: ``<split>.json`` / ``something-something-v2-<split>.json``;
            SSv1: ``<split>.csv`` / ``something-something-v1-<split>.csv``; Kinetics: ``<split>.csv``,
            "val" also as ``validate.csv``; list: ``<split>.txt``/``.csv``/``.list``).
        video_dir: where videos are (SSv2: ``videos/`` or ``20bn-something-something-v2/`` or root;
            Kinetics: ``<split>/``, ``videos/`` or root). For "list", relative paths are joined to it
            (default: root).
        classes: class names for Kinetics/list (Kinetics default: sorted names in the CSV).
        flip_pairs: label pairs swapped by horizontal flip (see the module docstring for the default).
        frame_template: file names inside frame folders (default ``img_{:05d}.jpg``; SSv1 ``{:05d}.jpg``).
        on_error: "skip" drops missing files with one warning; "raise" raises FileNotFoundError.
    """
    format = ALIASES.get(format, format)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} (or an alias: {sorted(ALIASES)}), got {format!r}")
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    split = {"validation": "val", "valid": "val"}.get(split, split)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    long_split = {"val": "validation"}.get(split, split)

    if format == "ssv2":
        labels_file = labels_file or _first_existing(
            [j("labels.json"), j("something-something-v2-labels.json")], "SSv2 labels file")
        list_file = list_file or _first_existing(
            [j(f"{long_split}.json"), j(f"{split}.json"), j(f"something-something-v2-{long_split}.json")],
            f"SSv2 {split} list")
        if video_dir is None:
            video_dir = next((d for d in (j("videos"), j("20bn-something-something-v2")) if os.path.isdir(d)), root)
        records, cls = parse_ssv2(labels_file, list_file, video_dir)
        ann_dir = os.path.dirname(os.path.abspath(labels_file))
    elif format == "ssv1":
        labels_file = labels_file or _first_existing(
            [j("labels.csv"), j("something-something-v1-labels.csv")], "SSv1 labels file")
        list_file = list_file or _first_existing(
            [j(f"{long_split}.csv"), j(f"{split}.csv"), j(f"something-something-v1-{long_split}.csv")],
            f"SSv1 {split} list")
        if video_dir is None:
            video_dir = next((d for d in (j("20bn-something-something-v1"), j("frames")) if os.path.isdir(d)), root)
        records, cls = parse_ssv1(labels_file, list_file, video_dir)
        if frame_template == FRAME_TEMPLATE:
            frame_template = SSV1_FRAME_TEMPLATE
        ann_dir = os.path.dirname(os.path.abspath(labels_file))
    elif format == "kinetics":
        list_file = list_file or _first_existing(
            [j(f"{split}.csv")] + ([j("validate.csv")] if split == "val" else []), f"Kinetics {split} CSV")
        if video_dir is None:
            video_dir = next((d for d in (j(split), j("videos")) if os.path.isdir(d)), root)
        records, cls = parse_kinetics(list_file, video_dir, classes)
        ann_dir = os.path.dirname(os.path.abspath(list_file))
    else:
        list_file = list_file or _first_existing(
            [j(f"{split}{e}") for e in (".txt", ".csv", ".list")], f"{split} list file")
        records, cls = parse_list_file(list_file, video_dir if video_dir is not None else root, frame_template)
        cls = list(classes) if classes is not None else cls
        ann_dir = os.path.dirname(os.path.abspath(list_file))

    present, missing = report_missing(records, on_error, f"{format} {split} ({list_file})")
    if not present:
        raise FileNotFoundError(f"{format} {split} ({list_file}): none of its {len(records)} files exist")
    num_classes = len(cls) if cls is not None else max(r.label for r in present) + 1
    pairs = _flip_pairs(flip_pairs, ann_dir, format, num_classes, cls)
    ds = VideoDataset(present, cls, pairs, format, frame_template, missing)
    ds.flip_label_map()  # validates the pairs against the class count
    return ds
