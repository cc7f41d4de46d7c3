"""Host-side video access with PyAV: probing (frame count, size, codec) and the fallback decoder.

The decoder reads each clip's frames in ONE forward pass over the stream: the wanted indices
are sorted and deduplicated, every packet is decoded in order, and only the wanted frames are
converted to RGB; the pass stops after the last wanted frame. There is never one seek per frame.

Frame indices are positions in decode (presentation) order, not timestamps, so variable frame
rate videos are indexed by frame, like DALI's ``frames=`` argument does.

Colour: frames are converted to RGB with the swscale settings DALI's decoder uses (bilinear chroma
upsampling at full resolution, accurate rounding, BT.601 matrix whatever the stream's colour
tags say, range from the pixel format), so the PyAV path's pixels equal DALI's CPU decoder's
bit for bit (measured on VP9, even and odd sizes, untagged and BT.709-tagged streams). PyAV's
default conversion differs by up to ~80 levels at sharp colour edges (nearest chroma).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import Colorspace, Interpolation

from .annotations import FRAME_TEMPLATE, VideoRecord, count_frame_files

# Codecs DALI's CPU decoder accepts (the PyPI build refuses H.264/HEVC and the rest on the CPU).
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
FRAMES_DIR_CODEC = "frames-dir"

_AV_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError, EOFError)


class VideoError(Exception):
    """A video that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ShortVideo(Exception):
    """The stream ended after ``decoded`` frames, before a wanted index (the probe over-counted)."""

    def __init__(self, decoded: int):
        super().__init__(f"stream ended after {decoded} frames")
        self.decoded = decoded


@dataclass(frozen=True)
class VideoMeta:
    num_frames: int
    height: int
    width: int
    codec: str
    header_frames: int = 0  # the frame count the container declares (0: it declares none)


# A video whose complete frames fall short of what its container declares by more than this
# (and one frame of rounding) was cut off (an interrupted download or copy): see check_frame_count.
TRUNCATED_BELOW = 0.9


def header_frame_count(container, stream) -> int:
    """Frames the container says the stream has: its frame count (MP4), else duration x frame rate
    (WebM/MKV keep the duration in the header, so a truncated file still declares the original length)."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = stream.guessed_rate or stream.average_rate
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1e6  # AV_TIME_BASE
    else:
        return 0
    return int(round(seconds * float(rate))) if rate else 0


def check_frame_count(meta: VideoMeta, path: str) -> VideoMeta:
    """Raises VideoError when the video holds clearly fewer complete frames than its header declares."""
    if meta.header_frames and meta.num_frames < TRUNCATED_BELOW * meta.header_frames - 1:
        raise VideoError(path, f"truncated or damaged: {meta.num_frames} complete frame(s) of the "
                               f"{meta.header_frames} its header declares")
    return meta


def probe(record: VideoRecord, frame_template: str = FRAME_TEMPLATE) -> VideoMeta:
    """Frame count, size and codec of a video (demuxes packets, decodes nothing) or frame folder.

    The count is the number of non-empty packets of the first video stream: for the codecs of
    action datasets (VP9, H.264, MPEG-4, MJPEG) one packet is one frame, and a truncated file
    counts only its complete packets (``header_frames`` keeps what the header declares, so
    ``check_frame_count`` can tell). Raises VideoError (missing, unreadable, no video stream,
    zero frames).
    """
    path = record.path
    if not os.path.exists(path):
        raise VideoError(path, "file not found")
    if record.frames_dir or os.path.isdir(path):
        n = record.num_frames if record.num_frames is not None else count_frame_files(path, frame_template)
        if n < 1:
            raise VideoError(path, "frame folder has no frames")
        first = os.path.join(path, frame_template.format(1))
        try:
            from PIL import Image

            with Image.open(first) as im:
                w, h = im.size
        except (OSError, ValueError) as e:
            raise VideoError(path, f"cannot read first frame {first}: {e}") from None
        return VideoMeta(n, h, w, FRAMES_DIR_CODEC)
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty file")
    try:
        with av.open(path, metadata_errors="ignore") as c:
            if not c.streams.video:
                raise VideoError(path, "no video stream")
            s = c.streams.video[0]
            codec, w, h = s.codec_context.name, s.codec_context.width, s.codec_context.height
            declared = header_frame_count(c, s)
            n = 0
            try:
                for pkt in c.demux(s):
                    if pkt.size > 0:
                        n += 1
            except _AV_ERRORS:
                pass  # a damaged tail: keep the packets read so far
    except VideoError:
        raise
    except av.error.EOFError:
        raise VideoError(path, "zero frames: the file ends before its first frame") from None
    except _AV_ERRORS as e:
        raise VideoError(path, f"cannot open: {e}") from None
    if n == 0:
        raise VideoError(path, "zero frames")
    if w <= 0 or h <= 0:
        raise VideoError(path, f"bad frame size {w}x{h}")
    return VideoMeta(n, h, w, codec, declared)


# swscale settings that reproduce DALI's CPU decoder output bit for bit (measured): bilinear
# chroma upsampling at full horizontal resolution, accurate rounding, BT.601, one thread.
_RGB_FLAGS = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND


def frame_to_rgb(frame) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a decoded frame, converted as DALI converts (see the module docstring)."""
    return frame.to_ndarray(format="rgb24", interpolation=_RGB_FLAGS, src_colorspace=Colorspace.ITU601, threads=1)


def decode_frames(path: str, indices, threads: int = 1) -> np.ndarray:
    """RGB frames ``indices`` (any order, repeats allowed) of a video: uint8 (len(indices), H, W, 3).

    One forward decode pass; raises ShortVideo when the stream ends before the largest index and
    VideoError when the file cannot be opened or a packet fails to decode before all wanted
    frames are out.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("indices must not be empty")
    if idx.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {idx.min()}")
    wanted = np.unique(idx)  # sorted
    got: dict[int, np.ndarray] = {}
    j, i = 0, 0  # next wanted position, frames decoded so far
    try:
        with av.open(path, metadata_errors="ignore") as c:
            if not c.streams.video:
                raise VideoError(path, "no video stream")
            s = c.streams.video[0]
            s.thread_count = threads
            for pkt in c.demux(s):
                try:
                    frames = pkt.decode()
                except _AV_ERRORS as e:
                    raise VideoError(path, f"corrupt data at frame {i}: {e}") from None
                for fr in frames:
                    if i == wanted[j]:
                        got[i] = frame_to_rgb(fr)
                        j += 1
                        if j == len(wanted):
                            break
                    i += 1
                if j == len(wanted):
                    break
    except VideoError:
        raise
    except _AV_ERRORS as e:
        raise VideoError(path, f"cannot decode: {e}") from None
    if j < len(wanted):
        if i == 0:
            raise VideoError(path, "no frame could be decoded")
        raise ShortVideo(i)
    shapes = {a.shape for a in got.values()}
    if len(shapes) != 1:
        raise VideoError(path, f"frame size changes inside the video: {sorted(shapes)}")
    return np.stack([got[int(k)] for k in idx])


def read_frame_folder(path: str, indices, frame_template: str = FRAME_TEMPLATE) -> np.ndarray:
    """Frames ``indices`` (0-based) of a folder of images named ``frame_template.format(i + 1)``."""
    from PIL import Image

    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    cache: dict[int, np.ndarray] = {}
    for k in np.unique(idx):
        f = os.path.join(path, frame_template.format(int(k) + 1))
        try:
            with Image.open(f) as im:
                cache[int(k)] = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise VideoError(path, f"cannot read frame {f}: {e}") from None
    shapes = {a.shape for a in cache.values()}
    if len(shapes) != 1:
        raise VideoError(path, f"frames have different sizes: {sorted(shapes)}")
    return np.stack([cache[int(k)] for k in idx])


def read_clip(record: VideoRecord, indices, frame_template: str = FRAME_TEMPLATE, threads: int = 1) -> np.ndarray:
    """Frames of a video file or frame folder (see decode_frames / read_frame_folder)."""
    if record.frames_dir or os.path.isdir(record.path):
        return read_frame_folder(record.path, indices, frame_template)
    return decode_frames(record.path, indices, threads)
