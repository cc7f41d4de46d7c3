"""The demo dataset generator (tdsclip.data.demo): determinism, the time-reversal property, motion, files."""
import glob
import hashlib
import json
import os

import numpy as np
import pytest

from tdsclip.data import build_dataset, probe
from tdsclip.data.demo import FLIP_PAIRS, DemoSpec, main, make_demo_data, render_video
from test_data_common import DEMO, demo_root

SPEC8 = DemoSpec(num_classes=8)


def digest(root):
    files = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True) if os.path.isfile(p))
    return {os.path.relpath(p, root): hashlib.sha1(open(p, "rb").read()).hexdigest() for p in files}


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    make_demo_data(str(tmp_path / "a"), 5, 3, seed=11, workers=1, min_frames=10, max_frames=12)
    make_demo_data(str(tmp_path / "b"), 5, 3, seed=11, workers=2, min_frames=10, max_frames=12)
    make_demo_data(str(tmp_path / "c"), 5, 3, seed=12, workers=1, min_frames=10, max_frames=12)
    a, b, c = (digest(str(tmp_path / x)) for x in "abc")
    assert len(a) == 8 + 4 and a == b  # 8 videos + labels, train, validation, flip_pairs
    assert a["labels.json"] == c["labels.json"] and a["videos/00000.webm"] != c["videos/00000.webm"]


@pytest.mark.parametrize("pair", range(4))
def test_second_class_of_a_pair_is_the_first_played_backwards(pair):
    fwd = render_video(7, 3, 2 * pair, SPEC8)
    bwd = render_video(7, 3, 2 * pair + 1, SPEC8)
    assert np.array_equal(bwd, fwd[::-1])
    assert not np.array_equal(fwd, fwd[::-1])  # it really moves


def _circular_centroid(frames, bg):
    """Object position per frame on the torus (x, y), from pixels that differ from the background."""
    size = frames.shape[1]
    diff = np.abs(frames.astype(int) - bg.astype(int)).max(-1) > 25
    ang = 2 * np.pi * (np.arange(size) + 0.5) / size
    out = []
    for m in diff:
        ys, xs = np.nonzero(m)
        cx = np.angle(np.exp(1j * ang[xs]).mean()) % (2 * np.pi) * size / (2 * np.pi)
        cy = np.angle(np.exp(1j * ang[ys]).mean()) % (2 * np.pi) * size / (2 * np.pi)
        out.append((cx, cy))
    return np.array(out)


@pytest.mark.parametrize("label, axis, sign", [(0, 0, 1), (1, 0, -1), (2, 1, -1), (3, 1, 1)])
def test_translation_speed_and_direction(label, axis, sign):
    for index in range(3):
        f = render_video(0, index, label)
        bg = np.median(f, axis=0)  # the object moves on, so the median frame is the background
        c = _circular_centroid(f, bg)
        step = (np.diff(c, axis=0) + 32) % 64 - 32  # unwrap on the torus
        assert 1.1 < sign * np.median(step[:, axis]) < 2.1, step[:, axis]  # >= ~1.2 px per frame, right way
        assert np.abs(np.median(step[:, 1 - axis])) < 0.3


def test_rotation_turns_in_place():
    f = render_video(0, 1, 4, SPEC8)  # clockwise on screen
    bg = np.median(f, axis=0)
    diff = np.abs(f.astype(int) - bg.astype(int)).max(-1) > 25
    assert diff.sum(axis=(1, 2)).min() > 30  # the object is always visible
    c = _circular_centroid(f, bg)
    step = (np.diff(c, axis=0) + 32) % 64 - 32
    assert np.abs(np.median(step, axis=0)).max() < 0.5  # it does not travel ...
    moved = np.abs(np.diff(f.astype(int), axis=0)).max(-1) > 25
    assert (moved.sum(axis=(1, 2)) > 10).all()  # ... but changes every frame


def test_files_are_ssv2_style_and_balanced():
    root = demo_root()
    labels = json.load(open(os.path.join(root, "labels.json")))
    assert len(labels) == DEMO["num_classes"] and sorted(map(int, labels.values())) == [0, 1, 2, 3]
    for split, n in (("train", DEMO["num_train"]), ("val", DEMO["num_val"])):
        ds = build_dataset("ssv2", split, root)
        assert len(ds) == n and ds.flip_pairs == ((0, 1),)
        counts = np.bincount([r.label for r in ds.records], minlength=4)
        assert (counts == n // 4).all()
        for r in ds.records[:4]:
            m = probe(r)
            assert m.codec == "vp9" and (m.height, m.width) == (64, 64)
            assert DEMO["min_frames"] <= m.num_frames <= DEMO["max_frames"]
    ids = [e["id"] for s in ("train", "validation") for e in json.load(open(os.path.join(root, f"{s}.json")))]
    assert len(set(ids)) == len(ids)  # splits do not share videos
    assert FLIP_PAIRS == ((0, 1), (4, 5))


def test_cli_and_errors(tmp_path, capsys):
    d = str(tmp_path / "cli")
    assert main([d, "--num-train", "2", "--num-val", "1", "--num-classes", "8", "--min-frames", "6",
                 "--max-frames", "6", "--workers", "1"]) == 0
    assert "wrote 2 train + 1 validation videos" in capsys.readouterr().out
    assert json.load(open(os.path.join(d, "flip_pairs.json"))) == [[0, 1], [4, 5]]
    with pytest.raises(FileExistsError):
        make_demo_data(d, 2, 1)
    make_demo_data(d, 2, 1, overwrite=True, workers=1, min_frames=6, max_frames=6)
    for kw in (dict(num_classes=3), dict(num_train=0), dict(min_frames=4), dict(size=8), dict(speed=(2, 1))):
        with pytest.raises(ValueError):
            make_demo_data(str(tmp_path / "bad"), **{"num_train": 2, "num_val": 1, **kw})
    with pytest.raises(ValueError):
        render_video(0, 0, 4)  # 4 classes by default
