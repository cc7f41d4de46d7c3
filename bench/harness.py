"""Shared machinery of the benchmarks: settings, shapes, the op specifications (inputs, the eager and
torch.compile references, the fused backends, bytes and FLOPs), timing and saved-tensor accounting.

Bytes moved are counted explicitly (each input read once, each output written once; parameters and
per-channel statistics are ignored, they are tiny next to the activations), FLOPs as 2 per
multiply-add of the GEMMs / convolutions (the "model" FLOPs: work a fused backend chooses to
recompute is not counted), so GB/s and TFLOP/s compare implementations on the same work.
"""
from __future__ import annotations

import datetime
import importlib
import math
import os
import platform
import statistics
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

import tds_kernels
from tds_kernels import _dispatch, _ext
from tds_kernels.ops.registry import OPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("fwd", "bwd", "fwd+bwd")


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    quick: bool = False
    full: bool = False  # every shape of issue #5 (on a 2-core CPU about 30 min; the default set a few)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    # time spent measuring one benchmark (after warm-up), and the bounds on its rounds
    @property
    def budget_s(self) -> float:
        return 0.0 if self.quick else (0.25 if self.cuda else 0.4)

    @property
    def rounds_bounds(self) -> tuple[int, int]:
        if self.quick:
            return 1, 1
        return (10, 200) if self.cuda else (3, 30)


SETTINGS: Settings = Settings()


# ------------------------------------------------------------------------------------------------
# shapes

@dataclass(frozen=True)
class Shape:
    """One benchmark geometry: B clips × T frames, N = grid² tokens of width d (TD-Adapter d/r)."""
    model: str
    B: int
    T: int
    grid: int
    d: int
    r: int = 16
    patch: int = 16

    @property
    def N(self) -> int:
        return self.grid * self.grid

    @property
    def hidden(self) -> int:
        return self.d // self.r

    @property
    def image(self) -> int:
        return self.grid * self.patch

    @property
    def label(self) -> str:
        return f"{self.model} BT={self.B * self.T} T={self.T}"

    @property
    def id(self) -> str:
        return f"{self.model.replace('/', '')}-B{self.B}-T{self.T}"

    def info(self) -> dict:
        return dict(model=self.model, B=self.B, T=self.T, N=self.N, d=self.d, r=self.r, hidden=self.hidden,
                    patch=self.patch, image=self.image, label=self.label)


def model_shapes(quick: bool, full: bool = True) -> list[Shape]:
    """Issue #5: ViT-B/16 (N = 196, d = 320) and ViT-L/14 (N = 256, d = 512), B·T ∈ {64, 128}, T ∈ {8, 16}.
    Not full: the B·T = 64 ones (B·T = 128 only doubles the work, which the GB/s column shows)."""
    if quick:
        return [Shape("quick", 2, 8, 4, 64, 16, 16)]
    shapes = []
    for model, grid, d, patch in (("B/16", 14, 320, 16), ("L/14", 16, 512, 14)):
        for bt in (64, 128) if full else (64,):
            for T in (8, 16):
                shapes.append(Shape(model, bt // T, T, grid, d, 16, patch))
    return shapes


def settings_shapes(settings: Settings, heavy: bool = False) -> list[Shape]:
    """The shapes an op runs at. On the CPU without --full: the B·T = 64 shapes, and for the heavy ops
    (whose plain PyTorch forward + backward takes about a second per call there) only the first,
    ViT-B/16 with B = 8 clips of T = 8, so that `pytest bench/ --benchmark-only` takes a few minutes.
    A GPU runs the full set either way."""
    full = settings.full or settings.cuda
    shapes = model_shapes(settings.quick, full)
    if heavy and not full and not settings.quick:
        shapes = shapes[:1]
    return shapes


# ------------------------------------------------------------------------------------------------
# op specifications

@dataclass
class State:
    """What one benchmark runs on: inputs, modules, the upstream gradient, the tensors whose .grad to reset."""
    inputs: dict
    grad_out: torch.Tensor | None = None
    leaves: list = field(default_factory=list)
    params: list = field(default_factory=list)  # parameters and buffers (not activations)

    def zero_grad(self) -> None:
        for t in self.leaves:
            t.grad = None


_COMPILED: dict = {}
_MODULES: dict = {}


def compiled(key: str, fn: Callable) -> Callable:
    """One torch.compile'd reference per op for the whole session (shape changes recompile once with
    dynamic shapes instead of once per shape)."""
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn)
    return _COMPILED[key]


def fused_backends(op: str, device: str) -> list[str]:
    """The fused backends that can run ``op`` on ``device`` here (C++ on CPU; CUDA and Triton on GPU)."""
    candidates = ("cpu",) if device == "cpu" else ("cuda", "triton")
    return [b for b in candidates if _dispatch.backend_available(op, b, device)[0]]


class OpBench:
    name: str = ""
    memory_bound: bool = False  # report the fraction of copy bandwidth on a GPU

    heavy: bool = False  # seconds per plain-PyTorch call on the CPU (see settings_shapes)

    def shapes(self, settings: Settings) -> list[Shape]:
        return settings_shapes(settings, self.heavy)

    def impls(self, settings: Settings) -> list[str]:
        return ["eager", "compile"] + fused_backends(self.name, settings.device)

    def build(self, shape: Shape, settings: Settings) -> State:
        raise NotImplementedError

    def call(self, state: State, impl: str) -> torch.Tensor:
        raise NotImplementedError

    def bytes(self, shape: Shape, settings: Settings, phase: str) -> int:
        raise NotImplementedError

    def flops(self, shape: Shape, phase: str) -> float:
        return 0.0


def _es(settings: Settings) -> int:
    return torch.empty((), dtype=settings.dtype).element_size()


def _phase_sum(fwd: float, bwd: float, phase: str) -> float:
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[phase]


class OneTensorOpBench(OpBench):
    """An op of one tensor x and fixed settings: eager and compile run the op's reference
    (tds_kernels/ops/<name>/reference.py, ``<name>_reference``), the fused backends the public function,
    both with ``args`` after x."""
    args: tuple = ()
    backward_reads: int = 2  # d-wide tensors backward reads and writes (dy, dx, + x when it is saved)

    def x_shape(self, shape: Shape) -> tuple:
        raise NotImplementedError

    def build(self, shape, settings):
        x = torch.randn(self.x_shape(shape), device=settings.device, dtype=settings.dtype, requires_grad=True)
        return State({"x": x}, torch.randn_like(x), [x])

    def call(self, state, impl):
        ref = getattr(importlib.import_module(f"tds_kernels.ops.{self.name}.reference"), f"{self.name}_reference")
        x = state.inputs["x"]
        if impl == "eager":
            return ref(x, *self.args)
        if impl == "compile":
            return compiled(self.name, ref)(x, *self.args)
        return getattr(tds_kernels, self.name)(x, *self.args, backend=impl)

    def bytes(self, shape, settings, phase):
        n = math.prod(self.x_shape(shape)) * _es(settings)
        return int(_phase_sum(2 * n, self.backward_reads * n, phase))  # fwd: x, y


class TemporalMaxDiff(OneTensorOpBench):
    """x - maxpool_t(x) + channel-mean mix on the TD-Adapter's narrow tensor (B, T, N, d/r), k = 3."""
    name = "temporal_max_diff"
    memory_bound = True
    args = (3, True)
    backward_reads = 3  # dy, x, dx

    def x_shape(self, shape):
        return (shape.B, shape.T, shape.N, shape.hidden)


class ClsTokenShift(OneTensorOpBench):
    """The half/half temporal shift of the CLS token, x (B, T, d)."""
    name = "cls_token_shift"
    memory_bound = True

    def x_shape(self, shape):
        return (shape.B, shape.T, shape.d)


class TemporalAdjacentDiff(OneTensorOpBench):
    """x_t - x_{t-1} along frames (M2-CLIP's TED difference path) on (B, T, N, d)."""
    name = "temporal_adjacent_diff"
    memory_bound = True
    args = (False, "backward")  # backward: dy, dx (nothing saved)

    def x_shape(self, shape):
        return (shape.B, shape.T, shape.N, shape.d)


def _module(key, make):
    """Modules are shared by the shapes of one width, so torch.compile keeps one graph per width."""
    if key not in _MODULES:
        _MODULES[key] = make()
    return _MODULES[key]


class ModuleOpBench(OpBench):
    """An op run through its nn.Module (state.inputs: the module's input under `input_name`, and "mod"):
    eager and compiled runs call the module's reference function, fused ones the module on a backend."""
    input_name = ""

    @staticmethod
    def _reference(x, mod):
        raise NotImplementedError

    def call(self, state, impl):
        x, mod = state.inputs[self.input_name], state.inputs["mod"]
        if impl == "eager":
            return self._reference(x, mod)
        if impl == "compile":
            return compiled(self.name, self._reference)(x, mod)
        mod.backend = impl
        return mod(x)


class TDAdapterBench(ModuleOpBench):
    """The TD-Adapter (gated, k = 3, r = 16) in training mode on u (B, T, N, d)."""
    name = "td_adapter"
    input_name = "u"
    memory_bound = True

    def build(self, shape, settings):
        mod = _module((self.name, shape.d, settings.device, settings.dtype),
                      lambda: tds_kernels.TDAdapter(shape.d, shape.r).to(settings.device, settings.dtype).train())
        u = torch.randn(shape.B, shape.T, shape.N, shape.d, device=settings.device, dtype=settings.dtype,
                        requires_grad=True)
        return State({"u": u, "mod": mod}, torch.randn_like(u), [u, *mod.parameters()],
                     [*mod.parameters(), *mod.buffers()])

    @staticmethod
    def _reference(u, mod):
        from tds_kernels.ops.td_adapter.reference import td_adapter_reference

        return td_adapter_reference(u, mod.down, mod.bn1, mod.up, mod.bn2, mod.kernel_size, mix=mod.mix,
                                    gated=mod.gated)

    def bytes(self, shape, settings, phase):
        n = shape.B * shape.T * shape.N * shape.d * _es(settings)
        return int(_phase_sum(2 * n, 3 * n, phase))  # fwd: u, out; bwd: dout, u, du

    def flops(self, shape, phase):
        M = shape.B * shape.T * shape.N
        fwd = 2 * 2 * M * shape.d * shape.hidden  # reduce and expand GEMMs
        return _phase_sum(fwd, 2 * fwd, phase)


class SMEStemBench(ModuleOpBench):
    """The SME stems (RGB + motion Conv3d + BN + fusion) from uint8 frames (B, T, 5, 3, H, W)."""
    name = "sme_stem"
    input_name = "frames"
    heavy = True

    def shapes(self, settings):
        shapes = super().shapes(settings)
        if settings.quick or settings.cuda:
            return shapes
        # On the CPU the plain Conv3d backward costs seconds per call at B·T = 128: B·T = 64 even with --full.
        return [s for s in shapes if s.B * s.T == 64]

    def build(self, shape, settings):
        mod = _module((self.name, shape.d, shape.patch, settings.device, settings.dtype),
                      lambda: tds_kernels.SMEStem(shape.d, shape.patch).to(settings.device, settings.dtype).train())
        frames = torch.randint(0, 256, (shape.B, shape.T, 5, 3, shape.image, shape.image), dtype=torch.uint8,
                               device=settings.device)
        out_shape = (shape.B, shape.T, shape.N, shape.d)
        return State({"frames": frames, "mod": mod},
                     torch.randn(out_shape, device=settings.device, dtype=settings.dtype), list(mod.parameters()),
                     [*mod.parameters(), *mod.buffers()])

    @staticmethod
    def _reference(frames, mod):
        from tds_kernels.ops.sme_stem.reference import sme_stem_reference

        return sme_stem_reference(frames, mod.conv_rgb, mod.bn_rgb, mod.conv_mot, mod.bn_mot, mod.alpha, mod.mean,
                                  mod.std)

    def bytes(self, shape, settings, phase):
        frames = shape.B * shape.T * 5 * 3 * shape.image * shape.image  # uint8
        tokens = shape.B * shape.T * shape.N * shape.d * _es(settings)
        return int(_phase_sum(frames + tokens, frames + tokens, phase))  # bwd: dout, frames (weight grads only)

    def flops(self, shape, phase):
        k = 3 * shape.patch * shape.patch  # temporal 3 x P x P per input channel
        fwd = 2 * shape.B * shape.T * shape.N * shape.d * (3 * k + 12 * k)  # RGB (3 ch) + motion (12 ch)
        return _phase_sum(fwd, fwd, phase)  # backward: weight gradients only (frames are data)


class BNMLPBench(OpBench):
    """The side block's MLP: BatchNorm(d) → Linear(d, 4d) → GELU → Linear(4d, d) on tokens (B, T, N, d)."""
    name = "bn_mlp"
    heavy = True

    def build(self, shape, settings):
        d = shape.d

        def make():
            torch.manual_seed(0)
            kw = dict(device=settings.device, dtype=settings.dtype)
            return {"bn_weight": torch.ones(d, **kw, requires_grad=True),
                    "bn_bias": torch.zeros(d, **kw, requires_grad=True),
                    "w1": (torch.randn(4 * d, d, **kw) * d ** -0.5).requires_grad_(),
                    "b1": torch.zeros(4 * d, **kw, requires_grad=True),
                    "w2": (torch.randn(d, 4 * d, **kw) * (4 * d) ** -0.5).requires_grad_(),
                    "b2": torch.zeros(d, **kw, requires_grad=True)}

        params = _module((self.name, d, settings.device, settings.dtype), make)
        x = torch.randn(shape.B, shape.T, shape.N, d, device=settings.device, dtype=settings.dtype,
                        requires_grad=True)
        return State({"x": x, **params}, torch.randn_like(x), [x, *params.values()], list(params.values()))

    def call(self, state, impl):
        from tds_kernels.ops.bn_mlp import bn_mlp, bn_mlp_reference

        p = state.inputs
        args = (p["x"], p["bn_weight"], p["bn_bias"], None, None, p["w1"], p["b1"], p["w2"], p["b2"])
        if impl == "eager":
            return bn_mlp_reference(*args, True, 1e-5)[0]
        if impl == "compile":
            return compiled(self.name, bn_mlp_reference)(*args, True, 1e-5)[0]
        return bn_mlp(*args, training=True, backend=impl)[0]

    def bytes(self, shape, settings, phase):
        n = shape.B * shape.T * shape.N * shape.d * _es(settings)
        return int(_phase_sum(2 * n, 3 * n, phase))

    def flops(self, shape, phase):
        M = shape.B * shape.T * shape.N
        fwd = 2 * 2 * M * shape.d * 4 * shape.d
        return _phase_sum(fwd, 2 * fwd, phase)


# op name -> its benchmark (a new op of tds_kernels/ops/registry.py adds its OpBench subclass here)
BENCHES: dict[str, type[OpBench]] = {b.name: b for b in (TemporalMaxDiff, ClsTokenShift, TDAdapterBench, SMEStemBench,
                                                         BNMLPBench, TemporalAdjacentDiff)}


def op_benches() -> list[OpBench]:
    """One benchmark per registered op, in the registry's order (tests/test_bench_quick.py checks that every
    registered op has one)."""
    return [BENCHES[op.name]() for op in OPS if op.name in BENCHES]


@dataclass(frozen=True)
class OpCase:
    op: OpBench
    shape: Shape
    impl: str
    phase: str

    @property
    def id(self) -> str:
        return f"{self.op.name}-{self.shape.id}-{self.impl}-{self.phase}"


def op_cases(settings: Settings) -> list[OpCase]:
    return [OpCase(op, shape, impl, phase)
            for op in op_benches() for shape in op.shapes(settings) for impl in op.impls(settings)
            for phase in PHASES]


# ------------------------------------------------------------------------------------------------
# timing

def synchronize(settings: Settings) -> None:
    if settings.cuda:
        torch.cuda.synchronize()


def pick_rounds(seconds_per_call: float, settings: Settings) -> int:
    lo, hi = settings.rounds_bounds
    if seconds_per_call <= 0:
        return hi
    return max(lo, min(hi, int(settings.budget_s / seconds_per_call)))


def cuda_event_ms(run: Callable, setup: Callable | None, rounds: int) -> dict:
    """Median / min milliseconds of run(*setup()) between two CUDA events, after synchronisation."""
    from gpu_floor import flush_l2  # the inputs fit in an H200's L2: time them from HBM

    times = []
    for _ in range(rounds):
        args = setup()[0] if setup is not None else ()
        flush_l2()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "rounds": rounds}


def run_timed(benchmark, settings: Settings, run: Callable, setup: Callable | None = None,
              warmup: int = 1, extra_info: dict | None = None) -> None:
    """benchmark.pedantic(run) with rounds picked from a warm call, synchronised on a GPU; on a GPU
    also the CUDA-event time (extra_info['cuda_event'])."""
    def setup_synced():
        args = setup() if setup is not None else ((), {})
        if settings.cuda:
            from gpu_floor import flush_l2

            flush_l2()
        synchronize(settings)
        return args

    def run_synced(*args):
        run(*args)
        synchronize(settings)

    t = 0.0
    for _ in range(max(1, warmup)):
        args, _ = setup_synced()
        t0 = time.perf_counter()
        run_synced(*args)
        t = time.perf_counter() - t0
    rounds = pick_rounds(t, settings)
    if extra_info:
        benchmark.extra_info.update(extra_info)
    benchmark.extra_info["rounds"] = rounds
    benchmark.pedantic(run_synced, setup=setup_synced, rounds=rounds, iterations=1)
    if settings.cuda:
        benchmark.extra_info["cuda_event"] = cuda_event_ms(run, setup_synced, rounds)


# ------------------------------------------------------------------------------------------------
# saved-tensor accounting

class SavedTensors:
    """Storages that autograd keeps for backward inside the block (each counted once), excluding the
    given tensors (parameters): ``with SavedTensors(exclude) as rec: ...; rec.bytes``."""

    def __init__(self, exclude=()):
        self.exclude = {t.untyped_storage()._cdata for t in exclude}
        self.seen: dict[int, int] = {}
        self._ctx = None

    def _pack(self, t):
        try:
            storage = t.untyped_storage()
            key, nbytes = storage._cdata, storage.nbytes()
        except (RuntimeError, NotImplementedError):
            key, nbytes = id(t), t.numel() * t.element_size()
        if key not in self.exclude:
            self.seen[key] = max(self.seen.get(key, 0), nbytes)
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())


# ------------------------------------------------------------------------------------------------
# environment

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment_info(settings: Settings) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "bench_device": settings.device,
        "bench_dtype": str(settings.dtype).replace("torch.", ""),
        "quick": settings.quick,
        "full": settings.full,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tds_kernels": tds_kernels.__version__,
        "extension": _ext.build_flags() if _ext.has_extension() else f"not built ({_ext.load_error()})",
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB"
        info["cuda"] = torch.version.cuda
    return info


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def geomean(values) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def quiet_warnings():
    """Backend downgrade notices are expected in benchmarks (e.g. no CUDA kernels): keep the log clean."""
    warnings.simplefilter("ignore", RuntimeWarning)

