"""Adapter from the training config to the video pipeline (``tdsclip.data``).

It builds the datasets and ``VideoClipLoader``s a run needs and gives them the interface the
training loop and ``tdsclip eval`` expect (see :mod:`tdsclip.engine.datasource`):

* training: ``data.batch_size`` clips per rank and step = ``batch_size / repeated_aug`` videos, each
  augmented ``repeated_aug`` times; the order and augmentation of epoch ``e`` come from
  ``(runtime.seed, e, video)`` alone and ``set_epoch(e, start_batch)`` skips the batches a
  resumed run already did, without decoding them;
* validation during training: single view (centre frames, centre crop), ``data.batch_size`` clips;
* ``tdsclip eval``: single view, or ``eval.num_crops`` x ``eval.num_clips`` views per video whose
  softmax scores are averaged.
"""
from __future__ import annotations

import torch

from .config import TrainConfig
from .distributed import DistInfo

# data.dataset -> tdsclip.data.build_dataset format
FORMATS = {"ssv2": "ssv2", "ssv1": "ssv1", "k400": "kinetics", "kinetics": "kinetics", "demo": "ssv2",
           "list": "list"}


def _format(cfg: TrainConfig) -> str:
    try:
        return FORMATS[cfg.data.dataset]
    except KeyError:
        raise ValueError(f"data.dataset must be one of {sorted(FORMATS)}, got {cfg.data.dataset!r}") from None


def build_split(cfg: TrainConfig, split: str, list_file: str = ""):
    """The ``VideoDataset`` of ``split`` ("train" or "val") from ``data.root`` / ``data.*_list``
    (or ``list_file`` when given)."""
    from tdsclip.data import build_dataset

    if not cfg.data.root:
        raise ValueError("data.root is not set: pass --data-root DIR (or data.root=DIR) with the dataset's "
                         "directory (see README, 'Training on real data')")
    list_file = list_file or {"train": cfg.data.train_list, "val": cfg.data.val_list}.get(split, "")
    return build_dataset(_format(cfg), split, cfg.data.root, labels_file=cfg.data.labels or None,
                         list_file=list_file or None,
                         **{"on_error": cfg.runtime.on_bad_video, **cfg.data.extra.get("dataset", {})})


def _check_classes(cfg: TrainConfig, dataset, split: str) -> None:
    n_model = cfg.model.num_classes
    if dataset.classes is not None and len(dataset.classes) != n_model:
        raise ValueError(f"model.num_classes={n_model} but the {split} set of {cfg.data.root!r} has "
                         f"{len(dataset.classes)} classes: set model.num_classes={len(dataset.classes)}")
    top = max((r.label for r in dataset.records), default=-1)
    if top >= n_model:
        raise ValueError(f"the {split} set has label {top}, but model.num_classes={n_model}")


def make_loader(cfg: TrainConfig, info: DistInfo, dataset, split: str, batch_videos: int, **kw):
    from tdsclip.data import VideoClipLoader

    aug = None if cfg.data.train_aug == "auto" else cfg.data.train_aug
    mcfg = cfg.model_config()
    return VideoClipLoader(dataset, batch_size=batch_videos, num_frames=mcfg.num_frames, split=split,
                           image_size=mcfg.resolved_image_size, aug=aug if split == "train" else None,
                           backend=cfg.data.decoder, device=info.device, rank=info.rank,
                           world_size=info.world_size, seed=cfg.runtime.seed, num_workers=cfg.data.num_workers,
                           **{"on_error": cfg.runtime.on_bad_video, **cfg.data.extra.get("loader", {}), **kw})


def check_some_readable(dataset, what: str) -> None:
    """Raises ValueError when no video of ``dataset`` can be used (probed until the first good one):
    a validation set that is all bad must stop a run before training, not after it."""
    from tdsclip.data.clips import MetaCache
    from tdsclip.data.video_io import VideoError

    cache, reasons = MetaCache(dataset), []
    for i in range(len(dataset)):
        try:
            cache.get(i)
            return
        except VideoError as exc:
            reasons.append(str(exc))
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    raise ValueError(f"none of the {len(dataset)} videos of the {what} can be used ({shown}): fix or replace "
                     "them, or point data.val_list at another list")


class VideoSource:
    """Training + validation data of a run (one rank's share)."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, with_train: bool = True):
        self.cfg, self.info = cfg, info
        self.train_loader = None
        if with_train:
            train = build_split(cfg, "train")
            _check_classes(cfg, train, "train")
            self.train_loader = make_loader(cfg, info, train, "train", cfg.data.batch_size // cfg.data.repeated_aug,
                                        repeated_aug=cfg.data.repeated_aug)
            self.class_names = list(train.classes) if train.classes else []
        # tdsclip eval: eval.split "val" is the validation list; anything else names a list file
        eval_list = cfg.eval.split if (not with_train and cfg.eval.split != "val") else ""
        try:
            self.val_set = build_split(cfg, "val", eval_list)
        except FileNotFoundError:
            if cfg.data.val_list or not with_train:
                raise
            self.val_set = None  # no validation split: training runs without validation
        if self.val_set is not None:
            _check_classes(cfg, self.val_set, "val")
            check_some_readable(self.val_set, f"validation set of {cfg.data.root!r}")
            if not with_train:
                self.class_names = list(self.val_set.classes) if self.val_set.classes else []
        self.num_classes = cfg.model.num_classes
        if not self.class_names:
            self.class_names = [str(i) for i in range(self.num_classes)]
        self._val_loader = None

    # -- the training loop's interface
    def num_train_batches(self) -> int:
        return len(self.train_loader)

    def train_batches(self, epoch: int, start_batch: int = 0):
        self.train_loader.set_epoch(epoch, start_batch)
        return iter(self.train_loader)

    def val_batches(self):
        if self.val_set is None:
            return iter(())
        if self._val_loader is None:
            self._val_loader = make_loader(self.cfg, self.info, self.val_set, "val", self.cfg.data.batch_size)
        return iter(self._val_loader)

    # -- tdsclip eval
    def eval_batches(self, views: str = "single"):
        """``(clips, labels, video_ids)`` batches; multi-view clips hold each video's views on adjacent rows."""
        if self.val_set is None:
            raise FileNotFoundError(f"no validation list found under {self.cfg.data.root!r} (set data.val_list)")
        if views == "single":
            return self._single_view()
        loader = make_loader(self.cfg, self.info, self.val_set, "test", self.cfg.eval.batch_size,
                         num_clips=self.cfg.eval.num_clips, num_crops=self.cfg.eval.num_crops)
        return iter(loader)

    def _single_view(self):
        # Each row is its own video: ids only need to be unique across ranks for the merge.
        next_id = self.info.rank
        for clips, labels in self.val_batches():
            n = labels.shape[0]
            ids = torch.arange(next_id, next_id + n * self.info.world_size, self.info.world_size)
            next_id += n * self.info.world_size
            yield clips, labels, ids


def build_train_source(cfg: TrainConfig, info: DistInfo) -> VideoSource:
    return VideoSource(cfg, info, with_train=True)


def build_eval_source(cfg: TrainConfig, info: DistInfo) -> VideoSource:
    return VideoSource(cfg, info, with_train=False)
