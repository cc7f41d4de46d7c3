"""Data loading at the real training shape: clips/s of every decode path the loader has.

224 px, T = 8 segments x 5-frame windows, the Something-Something train augmentation (RandAugment
m7 n4, random resized crop, flip) and repeated augmentation x2, on

* video files (VP9 WebM, as Something-Something v2 ships): DALI (CPU decoder here, NVDEC on a GPU) and
  PyAV + torch augmentation in DataLoader workers;
* frame folders (extracted JPEG frames ``img_00001.jpg`` ..., as the published recipe reads them):
  DALI's image decoder (libjpeg-turbo on the CPU, nvJPEG as ``device="mixed"`` on a GPU) and PIL +
  torch augmentation.

The figure to compare with is the training step's appetite: clips/s = batch / step time (the step
benchmark). ``extra_info["clips_per_s"]`` is clips delivered per second of the timed epoch.
"""
from __future__ import annotations

import os
import time

import pytest

import harness


def _videos_and_folders(root: str, num_videos: int, size: int, frames: int):
    """``num_videos`` VP9 videos of ``frames`` frames at size x size and the same frames as JPEG folders."""
    import numpy as np
    from PIL import Image

    from tdsclip.data.demo import DemoSpec, render_video, write_vp9

    spec = DemoSpec(size=size, min_frames=frames, max_frames=frames)
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    os.makedirs(os.path.join(root, "frames"), exist_ok=True)
    lines_v, lines_f = [], []
    for i in range(num_videos):
        video = render_video(0, i, i % 4, spec)
        write_vp9(os.path.join(root, "videos", f"{i}.webm"), video)
        d = os.path.join(root, "frames", str(i))
        os.makedirs(d, exist_ok=True)
        for k, frame in enumerate(video):
            Image.fromarray(np.ascontiguousarray(frame)).save(os.path.join(d, f"img_{k + 1:05d}.jpg"), quality=90)
        lines_v.append(f"videos/{i}.webm {frames} {i % 4}\n")
        lines_f.append(f"frames/{i} {frames} {i % 4}\n")
    with open(os.path.join(root, "videos.txt"), "w") as f:
        f.writelines(lines_v)
    with open(os.path.join(root, "folders.txt"), "w") as f:
        f.writelines(lines_f)


@pytest.fixture(scope="module")
def loading_data(tmp_path_factory):
    quick = harness.SETTINGS.quick
    root = str(tmp_path_factory.mktemp("loading"))
    # Something-Something v2 videos are ~240 px high, ~45 frames at 12 fps
    _videos_and_folders(root, num_videos=4 if quick else 16, size=64 if quick else 240, frames=48)
    return root


def _cases():
    from tdsclip.data.loader import dali_available

    cases = [("videos", "pyav"), ("folders", "pyav")]
    if dali_available():
        cases = [("videos", "dali"), ("folders", "dali")] + cases
    return cases


@pytest.mark.parametrize("source,backend", _cases(), ids=lambda x: x)
def test_data_loading(benchmark, source, backend, loading_data, settings):
    from tdsclip.data.dataset import build_dataset
    from tdsclip.data.loader import VideoClipLoader

    quick = settings.quick
    image = 64 if quick else 224
    ds = build_dataset("list", "train", loading_data, list_file=os.path.join(loading_data, f"{source}.txt"))
    loader = VideoClipLoader(ds, batch_size=4, num_frames=8, split="train", image_size=image,
                             aug="light" if quick else "ssv2", repeated_aug=2, backend=backend,
                             device=settings.device, num_workers=2, dali_threads=2, seed=0)
    counted = {}

    def epoch():
        n = 0
        for clips, _labels in loader:
            n += clips.shape[0]
        counted["clips"] = n

    t0 = time.perf_counter()
    epoch()  # warm-up: pipeline construction, worker start-up, file metadata
    warm = time.perf_counter() - t0
    benchmark.group = "data loading"
    harness.run_timed(benchmark, settings, epoch, warmup=0 if warm > 0 else 1, extra_info=dict(
        kind="data", source=source, backend=backend, path=loader.path, videos=len(ds), image=image, frames=8,
        window=5, aug="light" if quick else "ssv2"))
    benchmark.extra_info["clips_per_epoch"] = counted["clips"]
