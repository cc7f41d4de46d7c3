"""tdsclip.data: video files on disk -> uint8 clips (N, T, 5, 3, H, W) + int64 labels (docs/model.md §1, §6).

Typical use::

    from tdsclip.data import build_dataset, VideoClipLoader

    train = build_dataset("ssv2", "train", "/data/ssv2")          # or "ssv1", "kinetics", "list"
    loader = VideoClipLoader(train, batch_size=16, num_frames=8, split="train", image_size=224,
                             device="cuda", rank=rank, world_size=world)   # backend="auto"
    for epoch in range(epochs):
        loader.set_epoch(epoch)                    # or set_epoch(epoch, start_batch=b) to resume
        for clips, labels in loader:               # clips uint8 (32, 8, 5, 3, 224, 224) on cuda
            ...                                    # reference model: clips.float() (values 0..255)
        print(loader.skipped)                      # videos skipped this epoch (also warned)

Public API:

* ``build_dataset(format, split, root, ...)`` -> ``VideoDataset`` (records, classes, flip pairs).
  Missing files are reported up front (count + first names) and dropped, or raised with
  ``on_error="raise"``.
* ``VideoClipLoader(dataset, batch_size, num_frames, split, image_size, *, aug, backend, device,
  rank, world_size, repeated_aug, num_clips, num_crops, seed, on_error, num_workers)``: iterable
  with ``len()``, ``set_epoch(epoch, start_batch=0)``, ``skipped`` / ``skipped_files``,
  ``clips_per_video`` and ``path`` ("dali-gpu", "dali-cpu" or "pyav"). ``batch_size`` counts
  videos: a train batch holds batch_size * repeated_aug clips (the copies of a video adjacent),
  a test batch batch_size * num_clips * num_crops views and yields ``(clips, labels, video_index)``.
* ``sample_indices(n, T, mode, clip_idx=, num_clips=, rng=)``, ``window_indices(centres, n)``,
  ``clip_frame_indices(...)``: the index rules (``tdsclip.data.sampling``).
* ``AugConfig`` (``.ssv2()``, ``.kinetics()``, ``.light()``, ``.none()``): train augmentation settings;
  the loader's ``aug=`` also takes these names. The demo data wants "light" (the published SSv2
  recipe's 8 % crops and large RandAugment translations often cut its small object out).
* ``make_demo_data(dir, num_train, num_val, seed)`` in ``tdsclip.data.demo``: the demo dataset.
* ``VideoError``: raised for an unusable video with ``on_error="raise"``; ``SkippedVideoWarning``
  and ``MissingFilesWarning``: the warnings of the skip policy.

Paths: DALI on the GPU (NVDEC, all codecs it has, GPU augmentation); DALI on the CPU (VP8/VP9/MJPEG);
PyAV + torch on CPU worker processes for everything else (H.264 on a CPU machine, frame folders).
All paths draw the same augmentation from the same seed (plans are drawn on the host and
executed by DALI or torch) and agree in pixels up to decoder colour conversion. Which path runs
is logged once (logger "tdsclip.data").

Importing this package does not import DALI (loaded when a DALI path is first used) nor the model.
"""
from .annotations import VideoRecord, parse_kinetics, parse_list_file, parse_ssv1, parse_ssv2
from .augment import AugConfig, ClipPlan, RandAugmentSpec
from .dataset import MissingFilesWarning, VideoDataset, build_dataset
from .loader import SkippedVideoWarning, VideoClipLoader, dali_available
from .sampling import clip_frame_indices, sample_indices, test_views, window_indices
from .video_io import VideoError, VideoMeta, decode_frames, probe

__all__ = [
    "AugConfig", "ClipPlan", "MissingFilesWarning", "RandAugmentSpec", "SkippedVideoWarning", "VideoClipLoader",
    "VideoDataset", "VideoError", "VideoMeta", "VideoRecord", "build_dataset", "clip_frame_indices",
    "dali_available", "decode_frames", "parse_kinetics", "parse_list_file", "parse_ssv1", "parse_ssv2", "probe",
    "sample_indices", "test_views", "window_indices",
]
