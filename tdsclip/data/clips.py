"""Per-video work shared by every path: probe -> frame indices + plans -> (fallback) decode + augment.

A *work item* is one temporal clip of one video: (dataset index, clip k). Train and val have one
item per video; test has K (one per temporal clip). Each item is decoded once and augmented into
R spatial copies: R = repeated_aug for train, 1 for val, num_crops for test. All randomness comes
from ``numpy.random.default_rng([seed, epoch, video, ...])``, so a clip does not depend on which
process, worker or backend makes it.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import torch

from .augment import AugConfig, eval_plan
from .augment_torch import apply_plan
from .dataset import VideoDataset
from .sampling import clip_frame_indices
from .video_io import ShortVideo, VideoError, VideoMeta, check_frame_count, probe, read_clip


@dataclass(frozen=True)
class ClipSpec:
    """What to produce: split, T, window, size, copies, test clip count, augmentation, seed."""

    split: str
    num_frames: int
    image_size: int
    copies: int
    num_clips: int
    aug: AugConfig
    seed: int
    window: int = 5
    train_rule: str = "kinetics"  # training-time centre sampling (sampling.train_rule_for the data set kind)


@dataclass
class Item:
    """One prepared work item: the frames to decode and the plans (one per copy) to apply."""

    video: int
    clip: int
    record: object
    meta: VideoMeta
    frames: np.ndarray
    plans: list
    labels: list


class MetaCache:
    """Probe results per dataset index (probing demuxes the file once; results are reused every epoch).

    A video with clearly fewer frames than its header declares (truncated) is a VideoError here, so
    every path skips it (or raises, under ``on_error="raise"``) instead of sampling what is left.
    """

    def __init__(self, dataset: VideoDataset):
        self.dataset = dataset
        self._meta: dict[int, VideoMeta] = {}

    def get(self, i: int) -> VideoMeta:
        m = self._meta.get(i)
        if m is None:
            rec = self.dataset.records[i]
            m = check_frame_count(probe(rec, self.dataset.frame_template), rec.path)
            self._meta[i] = m
        return m

    def set_frames(self, i: int, n: int) -> VideoMeta:
        m = self.get(i)
        m = VideoMeta(n, m.height, m.width, m.codec, m.header_frames)
        self._meta[i] = m
        return m


def prepare_item(spec: ClipSpec, dataset: VideoDataset, flip_map: np.ndarray, meta: VideoMeta, video: int,
                 clip: int, epoch: int) -> Item:
    """Frame indices and plans of item (video, clip) in ``epoch``."""
    rec = dataset.records[video]
    n, T = meta.num_frames, spec.num_frames
    S = spec.image_size
    if spec.split == "train":
        frames = clip_frame_indices(n, T, "train", rng=np.random.default_rng([spec.seed, epoch, video, 1]),
                                    window=spec.window, train_rule=spec.train_rule)
        plans = [spec.aug.draw_train(np.random.default_rng([spec.seed, epoch, video, 2, c]), meta.height, meta.width, S)
                 for c in range(spec.copies)]
    elif spec.split == "val":
        frames = clip_frame_indices(n, T, "val", window=spec.window)
        plans = [eval_plan(meta.height, meta.width, S, 1)]
    else:
        frames = clip_frame_indices(n, T, "test", clip_idx=clip, num_clips=spec.num_clips, window=spec.window)
        plans = [eval_plan(meta.height, meta.width, S, c) for c in range(spec.copies)]
    labels = [int(flip_map[rec.label]) if (p.flip and rec.label >= 0) else rec.label for p in plans]
    return Item(video, clip, rec, meta, frames, plans, labels)


def host_clips(item: Item, num_segments: int, frame_template: str, threads: int = 1) -> torch.Tensor:
    """Decode (PyAV / image files) and augment (torch) one item: uint8 (copies, T, W, 3, S, S).

    Each distinct frame is decoded and augmented once and then put in clip order (every op works
    frame by frame, so this equals augmenting the repeated frames of clamped windows one by one).
    """
    distinct, order = np.unique(item.frames, return_inverse=True)
    frames = read_clip(item.record, distinct, frame_template, threads)
    order = torch.from_numpy(order.reshape(-1))
    out = torch.stack([apply_plan(frames, p)[order] for p in item.plans])
    c, f, ch, h, w = out.shape
    return out.view(c, num_segments, f // num_segments, ch, h, w)


def host_items(spec: ClipSpec, dataset: VideoDataset, flip_map: np.ndarray, cache: MetaCache, keys: list,
               epoch: int, threads: int = 1) -> tuple[dict, dict]:
    """Make the clips of ``keys`` = [(video, clip), ...] on the host (PyAV / image files + torch).

    Returns (done, bad): done[video] = [(uint8 (copies, T, W, 3, S, S), labels), ...] in key order;
    bad[video] = reason. A video any of whose items fails is dropped whole (so test views stay
    complete per video).
    """
    done: dict[int, list] = {}
    bad: dict[int, str] = {}
    for video, clip in keys:
        if video in bad:
            continue
        try:
            out = _host_one(spec, dataset, flip_map, cache, video, clip, epoch, threads)
        except VideoError as e:
            bad[video] = e.reason
            done.pop(video, None)
            continue
        done.setdefault(video, []).append(out)
    return done, bad


def _host_one(spec, dataset, flip_map, cache, video, clip, epoch, threads):
    meta = cache.get(video)
    for attempt in range(2):
        item = prepare_item(spec, dataset, flip_map, meta, video, clip, epoch)
        try:
            return host_clips(item, spec.num_frames, dataset.frame_template, threads), item.labels
        except ShortVideo as e:
            if attempt == 1:
                raise VideoError(item.record.path, f"only {e.decoded} frames decode") from None
            # The probe over-counted (damaged tail): re-sample with the frames that really decode.
            meta = cache.set_frames(video, e.decoded)
    raise AssertionError("unreachable")


def assemble(keys: list, done: dict, bad: dict, dataset: VideoDataset):
    """Batch tensors in key order: (clips (N, T, W, 3, S, S), labels (N,), videos (N,), skipped [(path, reason)]).

    Clips are None when every video of the batch failed.
    """
    clips, labels, videos = [], [], []
    for video in dict.fromkeys(v for v, _ in keys):  # batch order, each video once
        if video in bad:
            continue
        for out, lab in done.get(video, []):
            clips.append(out)
            labels += list(lab)
            videos += [video] * len(lab)
    skipped = [(dataset.records[v].path, r) for v, r in bad.items()]
    if not clips:
        return None, None, None, skipped
    return (torch.cat(clips), torch.tensor(labels, dtype=torch.int64), torch.tensor(videos, dtype=torch.int64),
            skipped)


@contextlib.contextmanager
def one_torch_thread():
    """Run the torch executor single-threaded when called from the main thread.

    Its tensors are small (one clip), so intra-op threads only add synchronisation, which costs
    20x on a busy machine (measured: 10 ms vs 240 ms per clip); parallelism comes from DataLoader
    worker processes, which torch already runs with one thread. Other threads are left alone: the
    setting is process-wide and a training step may be running there.
    """
    if threading.current_thread() is not threading.main_thread() or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def process_items_host(spec: ClipSpec, dataset: VideoDataset, flip_map: np.ndarray, cache: MetaCache, keys: list,
                       epoch: int, threads: int = 1):
    """host_items + assemble: one whole batch on the host (what a PyAV-path worker does)."""
    with one_torch_thread():
        return assemble(keys, *host_items(spec, dataset, flip_map, cache, keys, epoch, threads), dataset)
