"""Spatial augmentation, split into a *plan* (drawn here, on the host) and *executors*.

One ``ClipPlan`` is drawn per clip from a numpy Generator and holds every random choice:
the crop (a region of interest in source pixels), the flip, and a list of colour/geometry ops
with their parameters. Both executors apply the same plan to all 5*T frames of the clip:
``augment_torch.apply_plan`` (CPU / PyAV path) and the DALI graph in ``dali_pipeline`` (DALI CPU
and GPU paths). Drawing the plan once on the host is what makes the paths agree: given the same
seed they produce the same crops, flips and ops, and the tests compare their pixels.

Train augmentation (``AugConfig.ssv2`` / ``AugConfig.kinetics``, docs/model.md §6):

* RandomResizedCrop on a *canvas*: SSv2 resizes to 256x320, Kinetics scales the short side to 256
  (both scaled by image_size/224, so the 64 px demo uses a 73x91 canvas). The crop box is drawn
  as torchvision draws it (area 0.08-1, log-uniform ratio 3/4-4/3, 10 tries, then a centre crop)
  and mapped back to source pixels; the executors resample that source region straight to
  image_size (one resampling instead of two: same geometry, less blur and work).
* Horizontal flip p = 0.5 (labels swapped by the loader for datasets with flip pairs).
* Kinetics: grayscale p = 0.2 (ITU-R 601 luma), no RandAugment.
* SSv2: RandAugment ``rand-m7-n4-mstd0.5-inc1`` with timm's semantics: n ops drawn with
  replacement from timm's 15 ops, each applied with probability 0.5, magnitude drawn per op from
  N(m, mstd) clipped to [0, 10], the "increasing" variants of posterize/solarize/enhance ops, and
  a random sign for signed ops. Applied after the crop, at output resolution (the published code
  applies it to the full frame first; all magnitudes are relative, so the distribution of
  results is the same up to where the crop falls).

Deliberate, documented differences from timm/PIL (each executor implements them identically):
bilinear resampling for rotate/shear/translate (timm picks bilinear or bicubic), fill value 128
(timm uses the ImageNet mean ~ (124, 116, 104); DALI's warp takes one fill value), equalize uses
OpenCV's formula (DALI's), sharpness clamps at the border (PIL leaves the 1 px border unfiltered),
and every op rounds half up to uint8 (PIL truncates in places). Data-dependent ops
(autocontrast, equalize, contrast) use each frame's own statistics, as PIL does frame by frame.

Eval (val/test): scale the short side to image_size and take a square of that size at the
left/top (crop 0), centre (1) or right/bottom (2) of the long side: the published 3 spatial crops (docs/model.md §6).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# Op kinds. Every RandAugment op maps onto one of these; grayscale is COLOR with factor 0.
IDENTITY, AFFINE, POSTERIZE, SOLARIZE, SOLARIZE_ADD, AUTOCONTRAST, EQUALIZE, BRIGHTNESS, CONTRAST, COLOR, \
    SHARPNESS = range(11)
NUM_KINDS = 11
KIND_NAMES = ("identity", "affine", "posterize", "solarize", "solarize_add", "autocontrast", "equalize",
              "brightness", "contrast", "color", "sharpness")
FILL = 128.0  # value of pixels that rotate/shear/translate bring in from outside the frame
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L") and torchvision's grayscale
SLOT = 8  # floats per op in the packed plan: kind, param, 6 matrix entries
_LEVEL_DENOM = 10.0  # timm's magnitude scale


@dataclass(frozen=True)
class Op:
    """One op: ``kind`` (a constant above), a scalar ``param`` and, for AFFINE, ``matrix``.

    param: POSTERIZE bit mask, SOLARIZE threshold (>= threshold is inverted; 0 inverts all),
    SOLARIZE_ADD amount added below 128, BRIGHTNESS/CONTRAST/COLOR/SHARPNESS blend factor.
    matrix: 2x3 row-major destination->source map in continuous pixel coordinates whose origin
    is the top-left corner of the image (pixel centres at +0.5), as PIL's and DALI's warps use.
    """

    kind: int
    param: float = 0.0
    matrix: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about one clip's spatial augmentation.

    roi: (y0, x0, y1, x1) region of the source frame, in pixels (floats), resampled to
    ``size`` x ``size``; flip: mirror horizontally after the crop; ops: applied in order.
    """

    roi: tuple
    size: int
    flip: bool = False
    ops: tuple = ()

    def pack(self, num_slots: int) -> np.ndarray:
        """float32 (4 + SLOT*num_slots,) vector for the DALI graph; flip becomes a reversed x range."""
        if len(self.ops) > num_slots:
            raise ValueError(f"plan has {len(self.ops)} ops but the graph has {num_slots} slots")
        y0, x0, y1, x1 = self.roi
        if self.flip:
            x0, x1 = x1, x0
        v = np.zeros(4 + SLOT * num_slots, np.float32)
        v[:4] = (y0, x0, y1, x1)
        for s, op in enumerate(self.ops):
            v[4 + SLOT * s: 4 + SLOT * (s + 1)] = (op.kind, op.param) + tuple(op.matrix)
        return v


# --------------------------------------------------------------------------------------------
# RandAugment (timm's "rand-..." config strings)

_RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
             "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


@dataclass(frozen=True)
class RandAugmentSpec:
    n: int = 2
    m: float = 9.0
    mstd: float = 0.0
    mmax: float = 10.0
    inc: bool = False
    prob: float = 0.5

    @staticmethod
    def parse(config: str) -> "RandAugmentSpec":
        """Parse timm's RandAugment string, e.g. ``"rand-m7-n4-mstd0.5-inc1"``."""
        parts = config.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment config must start with 'rand-', got {config!r}")
        kw = {}
        for c in parts[1:]:
            m = re.match(r"^([a-z]+)(\d.*|inf)$", c)
            if not m:
                raise ValueError(f"RandAugment config {config!r}: cannot parse {c!r}")
            key, val = m.groups()
            if key == "m":
                kw["m"] = float(val)
            elif key == "n":
                kw["n"] = int(val)
            elif key == "mstd":
                kw["mstd"] = float(val)
            elif key == "mmax":
                kw["mmax"] = float(val)
            elif key == "inc":
                kw["inc"] = bool(int(val))
            elif key == "p":
                kw["prob"] = float(val)
            else:
                raise ValueError(f"RandAugment config {config!r}: unsupported key {key!r}")
        return RandAugmentSpec(**kw)

    def draw(self, rng: np.random.Generator, size: int) -> list:
        """The ops of one clip (skipped ops are left out), as timm's RandAugment.__call__ draws them."""
        ops = []
        for _ in range(self.n):
            name = _RAND_OPS[int(rng.integers(len(_RAND_OPS)))]  # with replacement, uniform
            if self.prob < 1.0 and rng.random() > self.prob:
                continue
            mag = self.m
            if self.mstd == float("inf"):
                mag = rng.uniform(0, mag)
            elif self.mstd > 0:
                mag = rng.normal(mag, self.mstd)
            mag = max(0.0, min(mag, self.mmax))
            ops.append(_rand_op(name, mag, self.inc, rng, size))
        return ops


def _neg(v: float, rng: np.random.Generator) -> float:
    return -v if rng.random() > 0.5 else v  # timm's _randomly_negate


def rotation_matrix(degrees: float, w: float, h: float) -> tuple:
    """PIL's Image.rotate(degrees) (counter-clockwise, about the centre) as a dst->src matrix."""
    a = -math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = w / 2.0, h / 2.0
    return (c, s, c * -cx + s * -cy + cx, -s, c, -s * -cx + c * -cy + cy)


def _rand_op(name: str, mag: float, inc: bool, rng: np.random.Generator, size: int) -> Op:
    lvl = mag / _LEVEL_DENOM
    if name == "AutoContrast":
        return Op(AUTOCONTRAST)
    if name == "Equalize":
        return Op(EQUALIZE)
    if name == "Invert":
        return Op(SOLARIZE, 0.0)
    if name == "Rotate":
        return Op(AFFINE, matrix=rotation_matrix(_neg(lvl * 30.0, rng), size, size))
    if name == "Posterize":
        bits = 4 - int(lvl * 4) if inc else int(lvl * 4)
        return Op(POSTERIZE, float((0xFF << (8 - bits)) & 0xFF) if bits < 8 else 255.0)
    if name == "Solarize":
        return Op(SOLARIZE, float(256 - int(lvl * 256) if inc else int(lvl * 256)))
    if name == "SolarizeAdd":
        return Op(SOLARIZE_ADD, float(int(lvl * 110)))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factor = 1.0 + _neg(lvl * 0.9, rng) if inc else lvl * 1.8 + 0.1
        kind = {"Color": COLOR, "Contrast": CONTRAST, "Brightness": BRIGHTNESS, "Sharpness": SHARPNESS}[name]
        return Op(kind, float(factor))
    if name == "ShearX":
        return Op(AFFINE, matrix=(1.0, _neg(lvl * 0.3, rng), 0.0, 0.0, 1.0, 0.0))
    if name == "ShearY":
        return Op(AFFINE, matrix=(1.0, 0.0, 0.0, _neg(lvl * 0.3, rng), 1.0, 0.0))
    if name == "TranslateXRel":
        return Op(AFFINE, matrix=(1.0, 0.0, _neg(lvl * 0.45, rng) * size, 0.0, 1.0, 0.0))
    if name == "TranslateYRel":
        return Op(AFFINE, matrix=(1.0, 0.0, 0.0, 0.0, 1.0, _neg(lvl * 0.45, rng) * size))
    raise AssertionError(name)


# --------------------------------------------------------------------------------------------
# Crops


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple:
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w) in an image of the given size."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def eval_crop_roi(height: int, width: int, crop: int = 1) -> tuple:
    """Square of the short side at the start (0), centre (1) or end (2) of the long side, as (y0, x0, y1, x1)."""
    if crop not in (0, 1, 2):
        raise ValueError(f"crop must be 0 (left/top), 1 (centre) or 2 (right/bottom), got {crop}")
    side = min(height, width)
    off = {0: 0, 1: (max(height, width) - side) // 2, 2: max(height, width) - side}[crop]
    if width >= height:
        return (0.0, float(off), float(side), float(off + side))
    return (float(off), 0.0, float(off + side), float(side))


@dataclass(frozen=True)
class AugConfig:
    """Train-time augmentation settings (eval always uses the fixed short-side crops).

    canvas: ("fixed", h, w) resizes to h x w, ("short", s) scales the short side to s; sizes are
    for image_size 224 and scale with it. randaug: a timm "rand-..." string or None.
    """

    name: str = "ssv2"
    canvas: tuple = ("fixed", 256, 320)
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    grayscale_p: float = 0.0
    randaug: Optional[str] = "rand-m7-n4-mstd0.5-inc1"
    _ra: Optional[RandAugmentSpec] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.canvas[0] not in ("fixed", "short") or len(self.canvas) != (3 if self.canvas[0] == "fixed" else 2):
            raise ValueError(f"canvas must be ('fixed', h, w) or ('short', s), got {self.canvas!r}")
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        for p in ("flip_p", "grayscale_p"):
            if not 0.0 <= getattr(self, p) <= 1.0:
                raise ValueError(f"{p} must be in [0, 1], got {getattr(self, p)}")
        object.__setattr__(self, "_ra", RandAugmentSpec.parse(self.randaug) if self.randaug else None)

    @staticmethod
    def ssv2(**kw) -> "AugConfig":
        return AugConfig(**{"name": "ssv2", **kw})

    @staticmethod
    def kinetics(**kw) -> "AugConfig":
        return AugConfig(**{"name": "kinetics", "canvas": ("short", 256), "grayscale_p": 0.2, "randaug": None, **kw})

    @staticmethod
    def light(**kw) -> "AugConfig":
        """Aspect-preserving crop of >= 60 % of the frame + flip, no RandAugment: for small synthetic data
        such as the demo, whose 12-16 px object the SSv2 recipe (8 % crops, 45 % translations) often
        cuts out of the clip."""
        return AugConfig(**{"name": "light", "canvas": ("short", 256), "scale": (0.6, 1.0), "randaug": None, **kw})

    @staticmethod
    def none() -> "AugConfig":
        """No train augmentation: train clips get the centre crop like val."""
        return AugConfig(name="none", scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, randaug=None)

    @staticmethod
    def preset(name: str) -> "AugConfig":
        try:
            return {"ssv2": AugConfig.ssv2, "kinetics": AugConfig.kinetics, "light": AugConfig.light,
                    "none": AugConfig.none}[name]()
        except KeyError:
            raise ValueError(f"unknown augmentation preset {name!r}; use 'ssv2', 'kinetics', 'light' or 'none'") \
                from None

    @property
    def num_slots(self) -> int:
        """Op slots a packed plan needs: RandAugment's n, plus one for grayscale."""
        return (self._ra.n if self._ra else 0) + (1 if self.grayscale_p > 0 else 0)

    def canvas_size(self, height: int, width: int, image_size: int) -> tuple:
        k = image_size / 224.0
        if self.canvas[0] == "fixed":
            return max(1, round(self.canvas[1] * k)), max(1, round(self.canvas[2] * k))
        s = self.canvas[1] * k
        if height <= width:
            return max(1, round(s)), max(1, round(s * width / height))
        return max(1, round(s * height / width)), max(1, round(s))

    def draw_train(self, rng: np.random.Generator, height: int, width: int, image_size: int) -> ClipPlan:
        """A random train plan for a source of height x width. The draw order is fixed (crop, flip, gray, ops)."""
        if self.name == "none":
            return eval_plan(height, width, image_size, 1)
        ch, cw = self.canvas_size(height, width, image_size)
        top, left, h, w = random_resized_crop_box(rng, ch, cw, self.scale, self.ratio)
        sy, sx = height / ch, width / cw
        roi = (top * sy, left * sx, (top + h) * sy, (left + w) * sx)
        flip = bool(rng.random() < self.flip_p)
        ops = []
        if self.grayscale_p > 0 and rng.random() < self.grayscale_p:
            ops.append(Op(COLOR, 0.0))
        if self._ra is not None:
            ops += self._ra.draw(rng, image_size)
        return ClipPlan(roi, image_size, flip, tuple(ops))


def eval_plan(height: int, width: int, image_size: int, crop: int = 1) -> ClipPlan:
    """The deterministic val/test plan: short side -> image_size, square crop ``crop`` (0, 1, 2)."""
    return ClipPlan(eval_crop_roi(height, width, crop), image_size)
