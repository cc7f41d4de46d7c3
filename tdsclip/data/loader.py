"""``VideoClipLoader``: batches of uint8 clips (N, T, 5, 3, H, W) + int64 labels on the model's device.

Paths (chosen once per loader, logged once per process):

* ``dali-gpu``: on a CUDA device with DALI installed, NVDEC decoding (``device="mixed"``) and the
  whole augmentation on the GPU.
* ``dali-cpu``: on the CPU with DALI installed, DALI's CPU decoder (VP8/VP9/MJPEG) and the same
  graph on CPU threads.

Frame folders (the published Something-Something recipe reads extracted JPEG frames) are decoded by
DALI's image decoder on both DALI paths (nvJPEG on the GPU, libjpeg-turbo on the CPU) and go through
the same augmentation graph; PIL reads them only on the ``pyav`` path and as the fallback.
* ``pyav``: PyAV decoding + torch augmentation in DataLoader worker processes.

Items DALI cannot take (codec not supported on that device) and every item of a
DALI batch that failed to decode go through the PyAV path inside the same batch, so a bad file
costs one batch re-run, never the epoch. Files that fail there too are skipped: a warning names
the file, ``loader.skipped`` counts them, and the count is reported at the end of the epoch;
``on_error="raise"`` raises ``VideoError`` instead.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import warnings
from typing import Optional, Union

import numpy as np
import torch

from .augment import AugConfig
from .clips import ClipSpec, MetaCache, assemble, host_items, prepare_item, process_items_host
from .dataset import VideoDataset
from .sampling import train_rule_for
from .video_io import DALI_CPU_CODECS, FRAMES_DIR_CODEC, VideoError

log = logging.getLogger("tdsclip.data")
_LOGGED: set = set()
BACKENDS = ("auto", "dali", "pyav")


class SkippedVideoWarning(UserWarning):
    """A video could not be decoded and was left out of its batch."""


def _log_once(msg: str) -> None:
    if msg not in _LOGGED:
        _LOGGED.add(msg)
        log.info(msg)


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


class _EpochSampler:
    """Yields the keys of the current epoch's batches; lives in the main process, so set_epoch reaches it."""

    def __init__(self, loader: "VideoClipLoader"):
        self.loader = loader

    def __iter__(self):
        e, keys = self.loader._current
        return iter([(e, k) for k in keys])

    def __len__(self):
        return len(self.loader._current[1])


class _HostBatches(torch.utils.data.Dataset):
    """Map-style dataset over batch keys, for DataLoader workers (PyAV + torch path)."""

    def __init__(self, spec: ClipSpec, dataset: VideoDataset, flip_map: np.ndarray):
        self.spec, self.dataset, self.flip_map = spec, dataset, flip_map
        self.cache = MetaCache(dataset)  # one per worker; workers are persistent

    def __getitem__(self, key):
        epoch, keys = key
        return process_items_host(self.spec, self.dataset, self.flip_map, self.cache, keys, epoch)

    def __len__(self):  # pragma: no cover - the sampler drives iteration
        return 0


def _identity(x):
    return x


class VideoClipLoader:
    """Iterable over batches of clips for one split, one rank.

    Args:
        dataset: a ``VideoDataset`` (see ``build_dataset``).
        batch_size: videos per batch (per rank). A train batch holds batch_size * repeated_aug
            clips (each video twice by default, differently augmented, adjacent); a test batch
            holds batch_size * num_clips * num_crops views (each video's views adjacent,
            clip-major: (k=0, crop 0..2), (k=1, crop 0..2), ...).
        num_frames: T, segments per clip (each holds a 5-frame window).
        split: "train" (random frames, augmentation, shuffled, drop_last), "val" (centre frames,
            centre crop) or "test" (num_clips temporal clips x num_crops spatial crops).
        image_size: output height = width.
        aug: AugConfig or preset name ("ssv2", "kinetics", "light", "none"); default by dataset.kind
            (SSv2/SSv1: "ssv2", Kinetics and list files: "kinetics"). Use "light" for the demo data.
        backend: "auto" (DALI when installed, else PyAV), "dali" (error without DALI), "pyav".
        device: where clips and labels are returned.
        rank, world_size: shard of the data this process reads (train shards are padded to equal
            length so every rank runs the same number of steps; val/test shards are disjoint).
        repeated_aug: copies per train video (default 2); must be 1 for val/test.
        num_clips, num_crops: test views (default K = 4 for Kinetics, else 2; 3 crops).
        seed: all randomness derives from (seed, epoch, video index).
        on_error: "skip" (warn, count, go on) or "raise".
        num_workers: PyAV path worker processes (default: min(4, CPU count)).
        shuffle, drop_last: default True for train, False otherwise (drop_last drops the last batch
            when it is not full, as in torch's DataLoader).
        dali_threads: DALI CPU threads.

    Yields ``(clips, labels)`` for train/val and ``(clips, labels, video_index)`` for test:
    clips uint8 (N, T, 5, 3, H, W) with frames in [0, 255] (the float path of the reference model
    is ``clips.float()``), labels int64 (N,), video_index int64 (N,) dataset indices.
    """

    def __init__(self, dataset: VideoDataset, batch_size: int, num_frames: int = 8, split: str = "train",
                 image_size: int = 224, *, aug: Union[AugConfig, str, None] = None, backend: str = "auto",
                 device: Union[str, torch.device] = "cpu", rank: int = 0, world_size: int = 1,
                 repeated_aug: Optional[int] = None, num_clips: Optional[int] = None, num_crops: int = 3,
                 seed: int = 0, on_error: str = "skip", num_workers: Optional[int] = None,
                 shuffle: Optional[bool] = None, drop_last: Optional[bool] = None, dali_threads: int = 2,
                 window: int = 5):
        if not isinstance(dataset, VideoDataset):
            raise TypeError(f"dataset must be a VideoDataset (see build_dataset), got {type(dataset).__name__}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        for name, v in (("batch_size", batch_size), ("num_frames", num_frames), ("image_size", image_size),
                        ("world_size", world_size), ("num_crops", num_crops)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {window}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if repeated_aug is None:
            repeated_aug = 2 if split == "train" else 1
        if not isinstance(repeated_aug, int) or repeated_aug < 1:
            raise ValueError(f"repeated_aug must be a positive int, got {repeated_aug!r}")
        if split != "train" and repeated_aug != 1:
            raise ValueError(f"repeated_aug must be 1 for split {split!r}, got {repeated_aug}")
        if num_clips is None:
            num_clips = 4 if dataset.kind == "kinetics" else 2
        if split == "test" and (not isinstance(num_clips, int) or num_clips < 1):
            raise ValueError(f"num_clips must be a positive int, got {num_clips!r}")
        if aug is None:
            aug = "kinetics" if dataset.kind in ("kinetics", "list") else "ssv2"
        if isinstance(aug, str):
            aug = AugConfig.preset(aug)
        if not isinstance(aug, AugConfig):
            raise TypeError(f"aug must be an AugConfig or a preset name, got {type(aug).__name__}")

        self.dataset, self.batch_size, self.split = dataset, batch_size, split
        self.device = torch.device(device)
        self.rank, self.world_size, self.seed, self.on_error = rank, world_size, seed, on_error
        self.shuffle = split == "train" if shuffle is None else shuffle
        self.drop_last = split == "train" if drop_last is None else drop_last
        # Training pads the rank shards to equal length (every rank runs the same number of steps; DDP
        # needs that); evaluation keeps each video once. drop_last only drops the last partial batch.
        self.pad_shards = split == "train"
        copies = repeated_aug if split == "train" else (num_crops if split == "test" else 1)
        self.num_clips = num_clips if split == "test" else 1
        self.spec = ClipSpec(split, num_frames, image_size, copies, self.num_clips, aug, seed, window,
                             train_rule_for(dataset.kind))
        self.flip_map = dataset.flip_label_map()
        self.epoch, self.start_batch = 0, 0
        self._current = (0, [])
        self.skipped = 0  # videos skipped in the current (or last finished) epoch
        self.skipped_files: list = []
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        self.dali_threads = dali_threads
        self._cache = MetaCache(dataset)
        self._runner = None
        self._image_runner = None  # frame folders: a DALI graph with an image decoder (built when first needed)
        self._host_loader = None
        self.path = self._choose_path(backend)

    # ----------------------------------------------------------------------------------- sizes
    @property
    def clips_per_video(self) -> int:
        """Clips each video contributes to a batch: repeated_aug (train), 1 (val), K * crops (test)."""
        return self.spec.copies * self.spec.num_clips

    def _shard(self, epoch: int) -> np.ndarray:
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(n) if self.shuffle
                 else np.arange(n))
        if self.pad_shards:  # equal-length shards: pad by wrapping around, like DistributedSampler
            per_rank = math.ceil(n / self.world_size)
            order = np.resize(order, per_rank * self.world_size)
        return order[self.rank::self.world_size]

    def _batch_keys(self, epoch: int) -> list:
        mine = self._shard(epoch)
        batches = [mine[i: i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return [[(int(v), k) for v in b for k in range(self.spec.num_clips)] for b in batches]

    def __len__(self) -> int:
        n = len(self._shard(0))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (reshuffles, redraws all sampling and augmentation).

        start_batch: the next iteration begins at this batch of the epoch (resuming mid-epoch);
        the batches are the same as in an uninterrupted epoch.
        """
        if epoch < 0 or start_batch < 0:
            raise ValueError(f"epoch and start_batch must be >= 0, got {epoch}, {start_batch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    # ----------------------------------------------------------------------------------- paths
    def _choose_path(self, backend: str) -> str:
        if backend == "pyav":
            path = "pyav"
        elif not dali_available():
            if backend == "dali":
                raise ImportError("backend='dali' needs NVIDIA DALI: pip install nvidia-dali-cuda130 (or tds[dali])")
            path = "pyav"
        elif self.device.type == "cuda":
            path = "dali-gpu"
        else:
            path = "dali-cpu"
            if backend == "auto" and not self._dali_cpu_can_decode_some():
                path = "pyav"
        descr = {
            "dali-gpu": "DALI on the GPU (NVDEC decoding, GPU augmentation)",
            "dali-cpu": "DALI on the CPU (VP8/VP9/MJPEG decoding, CPU augmentation); other codecs via PyAV",
            "pyav": f"PyAV decoding + torch augmentation ({self.num_workers} worker processes)",
        }[path]
        _log_once(f"video path for {self.split}: {descr}")
        return path

    def _dali_cpu_can_decode_some(self) -> bool:
        # Probe a few videos spread over the dataset: DALI-CPU only pays off when its codecs are there.
        n = len(self.dataset)
        for i in sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, 8))}):
            try:
                if self._cache.get(i).codec in DALI_CPU_CODECS or self._cache.get(i).codec == FRAMES_DIR_CODEC:
                    return True
            except VideoError:
                continue
        return False

    def _dali_ok(self, codec: str) -> bool:
        if codec == FRAMES_DIR_CODEC:
            return True  # DALI's image decoder, on either device
        if self.path == "dali-gpu":
            from .dali_pipeline import DALI_GPU_CODECS

            return codec in DALI_GPU_CODECS
        return codec in DALI_CPU_CODECS

    # ----------------------------------------------------------------------------------- iteration
    def __iter__(self):
        self.skipped, self.skipped_files = 0, []
        epoch = self.epoch
        keys = self._batch_keys(epoch)[self.start_batch:]
        self.start_batch = 0  # a resume offset applies to one iteration
        self._current = (epoch, keys)
        source = self._iter_host() if self.path == "pyav" else self._iter_dali(epoch, keys)
        videos_seen = 0
        for clips, labels, videos, skipped in source:
            for path, reason in skipped:
                self._skip(path, reason)
            if clips is None:
                continue
            videos_seen += len(set(videos.tolist()))
            clips = clips.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.split == "test":
                yield clips, labels, videos.to(self.device, non_blocking=True)
            else:
                yield clips, labels
        if self.skipped:
            msg = (f"epoch {epoch} ({self.split}, rank {self.rank}): skipped {self.skipped} video(s) that could not "
                   f"be decoded, {videos_seen} used")
            log.warning(msg)
            warnings.warn(msg, SkippedVideoWarning, stacklevel=2)

    def _skip(self, path: str, reason: str) -> None:
        if self.on_error == "raise":
            raise VideoError(path, reason)
        self.skipped += 1
        self.skipped_files.append((path, reason))
        warnings.warn(f"skipping video {path}: {reason}", SkippedVideoWarning, stacklevel=3)

    def _iter_host(self):
        if self._host_loader is None:
            ds = _HostBatches(self.spec, self.dataset, self.flip_map)
            # Its own generator: a DataLoader iterator otherwise draws its worker seed from the global torch
            # RNG when it is created (once with persistent workers, at the first epoch this process runs),
            # which would shift dropout / drop-path draws after a resume. Clips do not use worker seeds.
            self._host_loader = torch.utils.data.DataLoader(
                ds, batch_size=None, sampler=_EpochSampler(self), num_workers=self.num_workers,
                collate_fn=_identity, pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.seed),
                persistent_workers=self.num_workers > 0, prefetch_factor=2 if self.num_workers > 0 else None)
        yield from self._host_loader

    def _iter_dali(self, epoch: int, keys: list):
        """Runs the DALI loop in a producer thread (one batch ahead) so decoding overlaps training."""
        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        done = object()

        def produce():
            try:
                if self.device.type == "cuda":
                    torch.cuda.set_device(self.device)
                for batch in keys:
                    out = self._dali_batch(batch, epoch)
                    if self.device.type == "cuda":
                        ev = torch.cuda.Event()
                        ev.record()
                        out = out + (ev,)
                    while not stop.is_set():
                        try:
                            q.put(out, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(done)
            except BaseException as e:  # hand the error to the consumer
                q.put(e)

        th = threading.Thread(target=produce, name="tdsclip-dali", daemon=True)
        th.start()
        try:
            while True:
                got = q.get()
                if got is done:
                    break
                if isinstance(got, BaseException):
                    raise got
                if self.device.type == "cuda":
                    torch.cuda.current_stream(self.device).wait_event(got[-1])
                    got = got[:-1]
                yield got
        finally:
            stop.set()
            th.join()

    def _dali_runner(self, folders: bool):
        """The DALI graph for video files, or for frame folders (image decoder), built when first needed."""
        attr = "_image_runner" if folders else "_runner"
        if getattr(self, attr) is None:
            from .dali_pipeline import DaliClipRunner

            setattr(self, attr, DaliClipRunner(
                max_batch=self.batch_size * self.spec.num_clips, copies=self.spec.copies,
                num_slots=self.spec.aug.num_slots if self.split == "train" else 0, size=self.spec.image_size,
                device=self.device, num_threads=self.dali_threads, seed=self.seed,
                num_images=self.spec.num_frames * self.spec.window if folders else 0))
        return getattr(self, attr)

    def _dali_batch(self, keys: list, epoch: int):
        """One batch: DALI for the items it can decode, PyAV for the rest and for failed DALI batches."""
        spec, ds = self.spec, self.dataset
        items, folder_items, host_keys, bad = [], [], [], {}
        for video, clip in keys:
            if video in bad:
                continue
            try:
                meta = self._cache.get(video)
            except VideoError as e:
                bad[video] = e.reason
                continue
            if self._dali_ok(meta.codec):
                item = prepare_item(spec, ds, self.flip_map, meta, video, clip, epoch)
                (folder_items if meta.codec == FRAMES_DIR_CODEC else items).append(item)
            else:
                _log_once(f"{meta.codec} videos are decoded by PyAV: DALI on {self.device.type} does not take them")
                host_keys.append((video, clip))
        done: dict[int, list] = {}
        for group, folders in ((items, False), (folder_items, True)):
            if not group:
                continue
            runner = self._dali_runner(folders)
            plans = [[it.plans[c].pack(runner.num_slots) for it in group] for c in range(spec.copies)]
            try:
                if folders:
                    def read_image(i, k, group=group):
                        return np.fromfile(os.path.join(group[i].record.path, ds.frame_template.format(k + 1)),
                                           dtype=np.uint8)

                    outs = runner.run_images(read_image, [it.frames for it in group], plans)
                else:
                    encoded = [np.fromfile(it.record.path, dtype=np.uint8) for it in group]
                    outs = runner.run(encoded, [it.frames for it in group], plans)
            except Exception as e:  # noqa: BLE001 - DALI raises RuntimeError for any sample's failure
                _log_once(f"a DALI batch failed ({str(e).splitlines()[0][:200]}); such batches are re-run with "
                          "PyAV/PIL")
                host_keys = [(it.video, it.clip) for it in group] + host_keys
            else:
                stacked = torch.stack(outs, dim=1)  # (items, copies, T*W, 3, S, S)
                stacked = stacked.view(len(group), spec.copies, spec.num_frames, spec.window, *stacked.shape[-3:])
                for i, it in enumerate(group):
                    done.setdefault(it.video, []).append((stacked[i], it.labels))
        if host_keys:
            host_done, host_bad = host_items(spec, ds, self.flip_map, self._cache, host_keys, epoch)
            bad.update(host_bad)
            for video, parts in host_done.items():
                done[video] = [(c.to(self.device), lab) for c, lab in parts]
        return assemble(keys, done, bad, ds)
