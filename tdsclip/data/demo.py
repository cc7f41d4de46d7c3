"""Demo data: a small, deterministic, SSv2-style motion dataset of real VP9 videos.

``make_demo_data(DIR)`` (CLI: ``tdsclip make-demo-data DIR``) writes

    DIR/labels.json        {"Moving something from left to right": "0", ...}   (SSv2 label map)
    DIR/train.json         [{"id": "00000", "template": "Moving [something] ...", ...}, ...]
    DIR/validation.json    same, other videos
    DIR/flip_pairs.json    label pairs a horizontal flip swaps (read by build_dataset)
    DIR/videos/<id>.webm   VP9, size x size, 12 fps, min_frames..max_frames frames

so ``build_dataset("ssv2", split, DIR)`` reads it like Something-Something v2.

The task needs motion *and* its direction in time. Classes come in time-reversed pairs: the
second class of a pair is a video of the first played backwards (left<->right, up<->down,
clockwise<->anticlockwise, approaching<->receding), so the two share the same distribution of
frames and of unordered frame sets: a model blind to frame order is capped at 50 % accuracy and a
single frame says nothing. Each video is a textured object over a random smooth textured
background; translating objects move 1.2-2 px per frame and wrap around the frame edges (a torus),
so position at any given time is uniform and not a clue either. Rotation is 1.2-2 px per frame
at the object's edge, from a random start angle. The optional approaching/receding pair scales
the object 2.2x over the clip from a random start size (its edge moves only ~0.3 px per frame,
and its size at a known time is a weak clue).

Determinism: video i of a seed is drawn from ``SeedSequence([seed, i])`` alone, and the VP9
encoder runs single-threaded, so the same seed writes the same frames, labels and bytes whatever
the number of worker processes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

# (class name, SSv2-style template); pairs are (2k, 2k+1), the second the first reversed in time.
CLASSES = (
    ("Moving something from left to right", "Moving [something] from left to right"),
    ("Moving something from right to left", "Moving [something] from right to left"),
    ("Moving something up", "Moving [something] up"),
    ("Moving something down", "Moving [something] down"),
    ("Turning something clockwise", "Turning [something] clockwise"),
    ("Turning something anticlockwise", "Turning [something] anticlockwise"),
    ("Something approaching the camera", "[Something] approaching the camera"),
    ("Something moving away from the camera", "[Something] moving away from the camera"),
)
# A horizontal flip turns left<->right and clockwise<->anticlockwise; up/down and scale are unchanged.
FLIP_PAIRS = ((0, 1), (4, 5))
FPS = 12


@dataclass(frozen=True)
class DemoSpec:
    num_classes: int = 4
    size: int = 64
    min_frames: int = 24
    max_frames: int = 40
    speed: tuple = (1.2, 2.0)
    crf: int = 12


def _smooth_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random static background: a few colour sinusoids plus fine noise, values in ~[40, 215]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size, 3))
    for _ in range(4):
        fy, fx = rng.uniform(-0.25, 0.25, 2)
        phase = rng.uniform(0, 2 * np.pi)
        img += np.sin(fy * yy + fx * xx + phase)[..., None] * rng.uniform(-30, 30, 3)
    img += rng.normal(0, 6, (size, size, 3))
    return np.clip(127 + img + rng.uniform(-25, 25, 3), 40, 215)


def _object_texture(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray]:
    """A checker of random colour blocks (padded by 1 px of zero alpha, so bilinear sampling has soft edges)."""
    blocks = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)
    rep = int(np.ceil(s / 4))
    tex = np.kron(blocks, np.ones((rep, rep, 1)))[:s, :s]
    tex_p = np.zeros((s + 2, s + 2, 3))
    tex_p[1:-1, 1:-1] = tex
    alpha = np.zeros((s + 2, s + 2))
    alpha[1:-1, 1:-1] = 1.0
    return tex_p, alpha


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample img (h, w, ...) at continuous (u = x, v = y) pixel coordinates (centres at +0.5), clamped."""
    h, w = img.shape[:2]
    x, y = u - 0.5, v - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[y0c, x0c] * (1 - fx) + img[y0c, x1c] * fx
    bot = img[y1c, x0c] * (1 - fx) + img[y1c, x1c] * fx
    return top * (1 - fy) + bot * fy


def render_video(seed: int, index: int, label: int, spec: DemoSpec = DemoSpec()) -> np.ndarray:
    """The frames of demo video ``index`` with class ``label``: uint8 (n, size, size, 3), RGB.

    Everything random comes from SeedSequence([seed, index]); the reversed class of a pair is
    the forward video's frames in reverse order.
    """
    if not 0 <= label < spec.num_classes:
        raise ValueError(f"label must be in [0, {spec.num_classes}), got {label}")
    rng = np.random.default_rng([seed, index])
    size = spec.size
    n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
    s = int(rng.integers(10, 17))
    bg = _smooth_texture(rng, size)
    tex, alpha = _object_texture(rng, s)
    speed = rng.uniform(*spec.speed)
    cx0, cy0 = rng.uniform(0, size, 2)
    theta0 = rng.uniform(0, 2 * np.pi)
    sigma0 = rng.uniform(0.5, 0.8)
    pair = label // 2
    t = np.arange(n, dtype=np.float64)
    cx, cy = np.full(n, cx0), np.full(n, cy0)
    theta, sigma = np.full(n, theta0), np.ones(n)
    if pair == 0:
        cx = cx0 + speed * t  # left to right
    elif pair == 1:
        cy = cy0 - speed * t  # up (image y grows downwards)
    elif pair == 2:
        theta = theta0 + speed / (s / 2) * t  # clockwise on screen (y down); edge speed = speed
    else:
        sigma = sigma0 * 2.2 ** (t / max(n - 1, 1))  # approaching: grows 2.2x
    # Only pixels near the object see it: per frame, an L x L window around its centre, taken on
    # a torus so objects wrap around the frame edges.
    r = int(np.ceil((s / 2 + 2) * sigma.max() * np.sqrt(2)))
    offs = np.arange(-r, r + 1)
    px = (np.floor(cx)[:, None].astype(np.int64) + offs) % size  # (n, L)
    py = (np.floor(cy)[:, None].astype(np.int64) + offs) % size
    dx = (px + 0.5 - cx[:, None] + size / 2) % size - size / 2
    dy = (py + 0.5 - cy[:, None] + size / 2) % size - size / 2
    dx, dy = dx[:, None, :], dy[:, :, None]  # (n, 1, L), (n, L, 1)
    c, sn, sg = (v[:, None, None] for v in (np.cos(theta), np.sin(theta), sigma))
    lx = (c * dx + sn * dy) / sg + s / 2 + 1  # +1: the zero-alpha padding
    ly = (-sn * dx + c * dy) / sg + s / 2 + 1
    a = _bilinear(alpha, lx, ly)[..., None]
    gy, gx = py[:, :, None], px[:, None, :]
    patch = bg[gy, gx] * (1 - a) + _bilinear(tex, lx, ly) * a
    frames = np.broadcast_to(np.clip(np.rint(bg), 0, 255).astype(np.uint8), (n, size, size, 3)).copy()
    frames[np.arange(n)[:, None, None], gy, gx] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    if label % 2 == 1:
        frames = frames[::-1].copy()  # the paired class is the same motion backwards in time
    return frames


def write_vp9(path: str, frames: np.ndarray, crf: int = 12, fps: int = FPS) -> None:
    """Encode RGB frames as VP9 in WebM: realtime speed settings, constant quality, one thread."""
    import av

    n, h, w, _ = frames.shape
    tmp = path + ".part"
    # bitexact: no random segment UID, so the same seed writes the same bytes
    with av.open(tmp, "w", format="webm", container_options={"fflags": "+bitexact"}) as c:
        st = c.add_stream("libvpx-vp9", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"deadline": "realtime", "cpu-used": "8", "crf": str(crf), "b": "0", "threads": "1",
                      "row-mt": "0", "lag-in-frames": "0"}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    os.replace(tmp, path)


def _labels(seed: int, split_id: int, count: int, num_classes: int) -> np.ndarray:
    # Balanced classes in a seeded order.
    return np.random.default_rng([seed, 7919, split_id]).permutation(np.arange(count) % num_classes)


def _job(args) -> None:
    path, seed, index, label, spec = args
    write_vp9(path, render_video(seed, index, label, spec), spec.crf)


def make_demo_data(out_dir: str, num_train: int = 1200, num_val: int = 240, seed: int = 0, *, num_classes: int = 4,
                   size: int = 64, min_frames: int = 24, max_frames: int = 40, speed: Sequence[float] = (1.2, 2.0),
                   crf: int = 12, workers: Optional[int] = None, overwrite: bool = False,
                   verbose: bool = False) -> dict:
    """Write the demo dataset to ``out_dir`` (see the module docstring). Returns a summary dict.

    Args:
        num_train, num_val: videos per split (balanced over classes).
        seed: same seed, same videos and labels.
        num_classes: 2, 4, 6 or 8 (time-reversed pairs: translation x, translation y, rotation, scale).
        size: frame height = width in pixels.
        min_frames, max_frames: frame count range per video (>= 5 each).
        speed: object speed range in pixels per frame.
        crf: VP9 constant-quality level (lower = better).
        workers: encoding processes (default: CPU count).
        overwrite: replace an existing demo dataset in out_dir.
    """
    if num_classes not in (2, 4, 6, 8):
        raise ValueError(f"num_classes must be 2, 4, 6 or 8 (time-reversed pairs), got {num_classes}")
    if num_train < 1 or num_val < 0:
        raise ValueError(f"num_train must be >= 1 and num_val >= 0, got {num_train}, {num_val}")
    if not 5 <= min_frames <= max_frames:
        raise ValueError(f"need 5 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    if size < 24:
        raise ValueError(f"size must be >= 24 pixels, got {size}")
    if not 0 < speed[0] <= speed[1]:
        raise ValueError(f"speed must be a range (lo, hi) with 0 < lo <= hi, got {speed}")
    labels_path = os.path.join(out_dir, "labels.json")
    if os.path.exists(labels_path) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a dataset (labels.json); pass overwrite=True to replace it")
    spec = DemoSpec(num_classes, size, min_frames, max_frames, (float(speed[0]), float(speed[1])), crf)
    video_dir = os.path.join(out_dir, "videos")
    os.makedirs(video_dir, exist_ok=True)
    t0 = time.time()
    jobs, splits = [], {}
    index = 0
    for split_id, (split, count) in enumerate((("train", num_train), ("validation", num_val))):
        entries = []
        for label in _labels(seed, split_id, count, num_classes):
            vid = f"{index:05d}"
            name, template = CLASSES[int(label)]
            entries.append({"id": vid, "label": name.replace("something", "a patch").replace("Something", "A patch"),
                            "template": template, "placeholders": ["a patch"]})
            jobs.append((os.path.join(video_dir, vid + ".webm"), seed, index, int(label), spec))
            index += 1
        splits[split] = entries
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for k, _ in enumerate(pool.imap_unordered(_job, jobs, chunksize=8)):
                if verbose and (k + 1) % 200 == 0:
                    print(f"  {k + 1}/{len(jobs)} videos", file=sys.stderr)
    else:
        for job in jobs:
            _job(job)
    with open(labels_path + ".part", "w") as f:
        json.dump({CLASSES[i][0]: str(i) for i in range(num_classes)}, f, indent=1)
    for split, entries in splits.items():
        with open(os.path.join(out_dir, f"{split}.json"), "w") as f:
            json.dump(entries, f, indent=1)
    with open(os.path.join(out_dir, "flip_pairs.json"), "w") as f:
        json.dump([list(p) for p in FLIP_PAIRS if max(p) < num_classes], f)
    os.replace(labels_path + ".part", labels_path)  # written last: its presence marks a complete dataset
    return {"dir": out_dir, "train": num_train, "validation": num_val, "classes": num_classes,
            "seconds": time.time() - t0, "videos": video_dir}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tdsclip make-demo-data DIR [options]``."""
    p = argparse.ArgumentParser(prog="tdsclip make-demo-data", description=(
        "Write a deterministic SSv2-style demo dataset of VP9 videos: classes in time-reversed pairs "
        "(left/right, up/down, clockwise/anticlockwise, approaching/receding)."))
    p.add_argument("dir", help="output directory")
    p.add_argument("--num-train", type=int, default=1200)
    p.add_argument("--num-val", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-classes", type=int, default=4, choices=(2, 4, 6, 8))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--min-frames", type=int, default=24)
    p.add_argument("--max-frames", type=int, default=40)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    try:
        info = make_demo_data(a.dir, a.num_train, a.num_val, a.seed, num_classes=a.num_classes, size=a.size,
                              min_frames=a.min_frames, max_frames=a.max_frames, workers=a.workers,
                              overwrite=a.overwrite, verbose=True)
    except FileExistsError:
        print(f"make-demo-data: error: {a.dir} already holds a data set (labels.json); pass --overwrite to "
              "replace it, or choose another directory", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"make-demo-data: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info['train']} train + {info['validation']} validation videos ({info['classes']} classes) "
          f"to {info['dir']} in {info['seconds']:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
