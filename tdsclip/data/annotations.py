"""Annotation parsers: turn a dataset's own list files into ``VideoRecord``s.

Supported formats (each parser returns ``(records, class_names)``; label ``-1`` means unlabelled):

* Something-Something v2: a labels JSON ``{"class name": "id", ...}`` and split JSON lists of
  ``{"id": "78687", "template": "Holding [something] next to [something]", "label": ...}``.
  The class is the template with its brackets removed ("Holding something next to something");
  the split's own "label" field holds the filled-in objects and is not the class. Videos are
  ``<video_dir>/<id>.webm``. The test list has no "template": its labels are -1.
* Kinetics-400: a CSV with header ``label,youtube_id,time_start,time_end,split[,...]``; files are
  ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` either directly in ``video_dir`` or in
  ``video_dir/<label>/`` (the label with spaces, or with spaces replaced by underscores).
  Class ids are the sorted class names unless ``classes`` is given (pass the train split's
  classes when parsing val/test so ids agree).
* Something-Something v1: ``something-something-v1-labels.csv`` (one class name per line, id =
  line number) and split CSVs of ``id;class name`` lines; each video is a folder of frames
  ``<video_dir>/<id>/00001.jpg, 00002.jpg, ...``.
* Generic list files, one video per line: ``path label`` or ``path num_frames label``
  (the second form is TSN's frame-folder list). A file is in the 3-column form when every line's
  last two fields are integers and it has at least 3 fields; paths may contain spaces.
  Relative paths are joined to ``root``. A path naming a directory is a folder of extracted
  frames ``img_00001.jpg, img_00002.jpg, ...`` (``frame_template``).
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from typing import Optional, Sequence

FRAME_TEMPLATE = "img_{:05d}.jpg"


@dataclass(frozen=True)
class VideoRecord:
    """One video (or frame folder) of a dataset.

    path: file or directory; label: class id (-1 when unknown); num_frames: frame count when the
    annotation gives it (frame folders), else None (probed from the file); video_id: the dataset's id.
    """

    path: str
    label: int
    num_frames: Optional[int] = None
    video_id: str = ""
    frames_dir: bool = False


def _read_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def ssv2_class_name(template: str) -> str:
    """'Putting [something] onto [something]' -> 'Putting something onto something'."""
    return template.replace("[", "").replace("]", "")


def parse_ssv2_labels(labels_json: str) -> list[str]:
    """SSv2 label map {"name": "id"} -> class names indexed by id (ids must be 0..C-1)."""
    raw = _read_json(labels_json, "SSv2 labels file")
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"SSv2 labels file {labels_json} must hold a non-empty JSON object {{name: id}}")
    names: dict[int, str] = {}
    for name, idx in raw.items():
        try:
            i = int(idx)
        except (TypeError, ValueError):
            raise ValueError(f"SSv2 labels file {labels_json}: id of {name!r} is not an integer: {idx!r}") from None
        if i in names:
            raise ValueError(f"SSv2 labels file {labels_json}: id {i} is used by {names[i]!r} and {name!r}")
        names[i] = name
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"SSv2 labels file {labels_json}: ids must be 0..{len(names) - 1} without gaps")
    return [names[i] for i in range(len(names))]


def parse_ssv2(labels_json: str, split_json: str, video_dir: str, ext: str = ".webm"):
    """Something-Something v2 split -> (records, class_names)."""
    classes = parse_ssv2_labels(labels_json)
    index = {name: i for i, name in enumerate(classes)}
    items = _read_json(split_json, "SSv2 split file")
    if not isinstance(items, list):
        raise ValueError(f"SSv2 split file {split_json} must hold a JSON list of {{'id': ..., 'template': ...}}")
    records = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"SSv2 split file {split_json}: entry {k} has no 'id': {item!r}")
        vid = str(item["id"])
        label = -1
        if "template" in item:
            name = ssv2_class_name(item["template"])
            if name not in index:
                raise ValueError(
                    f"SSv2 split file {split_json}: entry {k} (id {vid}) has template {item['template']!r}, "
                    f"whose class {name!r} is not in {labels_json}"
                )
            label = index[name]
        records.append(VideoRecord(os.path.join(video_dir, vid + ext), label, None, vid))
    return records, classes


SSV1_FRAME_TEMPLATE = "{:05d}.jpg"


def parse_ssv1(labels_csv: str, split_csv: str, video_dir: str):
    """Something-Something v1 split -> (records, class_names); videos are frame folders."""
    try:
        with open(labels_csv, encoding="utf-8") as f:
            classes = [ln.strip() for ln in f if ln.strip()]
        with open(split_csv, encoding="utf-8") as f:
            rows = [(i + 1, ln.strip()) for i, ln in enumerate(f) if ln.strip()]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"SSv1 annotation file not found: {e.filename}") from None
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for i, row in rows:
        vid, sep, name = row.partition(";")
        if not sep:
            records.append(VideoRecord(os.path.join(video_dir, vid), -1, None, vid, frames_dir=True))
            continue
        if name not in index:
            raise ValueError(f"{split_csv}:{i}: class {name!r} is not in {labels_csv}")
        records.append(VideoRecord(os.path.join(video_dir, vid), index[name], None, vid, frames_dir=True))
    return records, classes


def kinetics_filename(youtube_id: str, time_start, time_end, ext: str = ".mp4") -> str:
    """'abc', 14, 24 -> 'abc_000014_000024.mp4' (the Kinetics-400 download naming)."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}{ext}"


def parse_kinetics(csv_path: str, video_dir: str, classes: Optional[Sequence[str]] = None, ext: str = ".mp4"):
    """Kinetics-400 CSV -> (records, class_names)."""
    try:
        f = open(csv_path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"Kinetics CSV not found: {csv_path}") from None
    with f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(
                f"Kinetics CSV {csv_path} must have the header label,youtube_id,time_start,time_end,split; "
                f"got {reader.fieldnames}"
            )
        rows = list(reader)
    if classes is None:
        classes = sorted({r["label"] for r in rows if r["label"]})
    classes = list(classes)
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for k, r in enumerate(rows):
        try:
            fname = kinetics_filename(r["youtube_id"], r["time_start"], r["time_end"], ext)
        except ValueError:
            raise ValueError(f"Kinetics CSV {csv_path}: row {k + 2} has non-numeric times: {r}") from None
        name = r["label"]
        if name and name not in index:
            raise ValueError(f"Kinetics CSV {csv_path}: row {k + 2} has label {name!r}, not among the classes given")
        candidates = [os.path.join(video_dir, fname)]
        if name:
            candidates += [os.path.join(video_dir, name, fname), os.path.join(video_dir, name.replace(" ", "_"), fname)]
        path = next((p for p in candidates if os.path.exists(p)), candidates[0])
        records.append(VideoRecord(path, index[name] if name else -1, None, fname[: -len(ext)] if ext else fname))
    return records, classes


_INT = re.compile(r"^-?\d+$")


def parse_list_file(list_path: str, root: str = "", frame_template: str = FRAME_TEMPLATE):
    """``path label`` / ``path num_frames label`` list -> (records, None). See the module docstring."""
    try:
        with open(list_path, encoding="utf-8") as f:
            lines = [(i + 1, ln.strip()) for i, ln in enumerate(f)]
    except FileNotFoundError:
        raise FileNotFoundError(f"list file not found: {list_path}") from None
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    fields = [(i, ln.split()) for i, ln in lines]
    for i, parts in fields:
        if len(parts) < 2 or not _INT.match(parts[-1]):
            raise ValueError(f"{list_path}:{i}: expected 'path label' or 'path num_frames label', "
                             f"got {' '.join(parts)!r}")
    three = bool(fields) and all(len(p) >= 3 and _INT.match(p[-2]) for _, p in fields)
    records = []
    for i, parts in fields:
        if three:
            path, nf, label = " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])
            if nf < 0:
                raise ValueError(f"{list_path}:{i}: num_frames must be >= 0, got {nf}")
        else:
            path, nf, label = " ".join(parts[:-1]), None, int(parts[-1])
        full = path if os.path.isabs(path) or not root else os.path.join(root, path)
        records.append(VideoRecord(full, label, nf, path, frames_dir=os.path.isdir(full)))
    return records, None


def count_frame_files(directory: str, frame_template: str = FRAME_TEMPLATE) -> int:
    """Frames in a frame folder: the longest run img_00001, img_00002, ... that exists."""
    names = set(os.listdir(directory))
    n = 0
    while frame_template.format(n + 1) in names:
        n += 1
    return n
