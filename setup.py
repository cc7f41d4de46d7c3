"""Builds `tds_kernels._C`, the C++ (and, where a GPU can use them, CUDA) kernels of the fused ops.

What gets built (``build_plan`` decides; the build log prints its one-line reason):
  * the C++ CPU kernels always, unless TDS_KERNELS_SKIP_EXT=1 (pure-Python install: Triton and
    reference backends only);
  * the CUDA kernels when torch was built with CUDA, nvcc is found (CUDA_HOME or PATH) and a GPU is
    visible, or when TDS_KERNELS_FORCE_CUDA=1 (CI and wheel builds on machines without a GPU);
    TDS_KERNELS_SKIP_CUDA=1 skips them.
torch must be importable here: pip's default build isolation hides the installed torch, and a
package without its kernels would run every op on the slow reference, so that build stops with a
message saying what to do (`pip install --no-build-isolation .`, or TDS_KERNELS_SKIP_EXT=1).

The version is ``tds_kernels/version.py``'s, plus a local part naming the torch and the kernels
built (``0.1.0+torch2.14cu130``, ``0.1.0+torch2.14cpu``), as flash-attn and causal-conv1d do; an
sdist and a build without the extension carry the plain version.
Object files live in ``build/temp-<torch>-<cpu|cuXY>/`` across builds, so a re-install (pip
builds editable installs in a fresh temporary directory) recompiles only what changed (ninja).
TORCH_CUDA_ARCH_LIST picks the GPU targets (default "8.0;9.0+PTX": A100 and H100, plus PTX).
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _PlainBuildExt

ROOT = os.path.dirname(os.path.abspath(__file__))
SKIP_EXT, SKIP_CUDA, FORCE_CUDA = "TDS_KERNELS_SKIP_EXT", "TDS_KERNELS_SKIP_CUDA", "TDS_KERNELS_FORCE_CUDA"

NO_TORCH_MESSAGE = (
    "tds: torch is not importable in this build environment, so the C++/CUDA kernels of tds_kernels "
    "cannot be compiled and every op would run on its slow reference implementation.\n"
    "pip builds in an isolated environment by default, which hides the torch you installed. Install "
    "torch first, then build against it:\n"
    "    pip install --no-build-isolation .        (or -e . for a development install)\n"
    f"To install without the compiled kernels on purpose (Triton/reference only), set {SKIP_EXT}=1."
)


def base_version() -> str:
    """The one version number of the package, read from tds_kernels/version.py (not imported: that
    would import torch)."""
    with open(os.path.join(ROOT, "tds_kernels", "version.py"), encoding="utf-8") as f:
        match = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), flags=re.M)
    if match is None:
        raise RuntimeError("tds_kernels/version.py holds no __version__ = \"...\" line")
    return match.group(1)


def _flag(env, name: str) -> bool:
    return env.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    build_ext: bool          # compile tds_kernels._C
    with_cuda: bool          # ... with the CUDA kernels
    reason: str              # one line for the build log
    error: str | None = None # the build must stop with this message
    local_version: str = ""  # "torch2.14cu130" / "torch2.14cpu" ("" without the extension)


def build_plan(env, torch_version: str | None, torch_cuda: str | None, nvcc: str | None,
               gpu_visible: bool) -> BuildPlan:
    """What to build, from the environment variables and the facts of this machine (torch_version
    None: torch is not importable). Pure, so tests can ask it about machines they are not."""
    if _flag(env, SKIP_EXT):
        return BuildPlan(False, False, f"{SKIP_EXT}=1: building no extension (Triton/reference backends only)")
    if torch_version is None:
        return BuildPlan(True, False, "torch is not importable", error=NO_TORCH_MESSAGE)
    if _flag(env, SKIP_CUDA):
        with_cuda, why = False, f"{SKIP_CUDA}=1"
    elif _flag(env, FORCE_CUDA):
        if torch_cuda is None or nvcc is None:
            missing = "torch has no CUDA" if torch_cuda is None else "nvcc not found (set CUDA_HOME)"
            return BuildPlan(True, True, missing, error=f"tds: {FORCE_CUDA}=1 but {missing}")
        with_cuda, why = True, f"{FORCE_CUDA}=1"
    elif torch_cuda is None:
        with_cuda, why = False, "torch has no CUDA"
    elif nvcc is None:
        with_cuda, why = False, "nvcc not found (set CUDA_HOME)"
    elif not gpu_visible:
        with_cuda, why = False, f"no GPU visible; {FORCE_CUDA}=1 compiles the CUDA kernels anyway"
    else:
        with_cuda, why = True, "GPU visible"
    major_minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    local = f"torch{major_minor}" + ("cu" + torch_cuda.replace(".", "") if with_cuda else "cpu")
    kind = "CPU + CUDA" if with_cuda else "CPU only"
    return BuildPlan(True, with_cuda, f"building {kind} kernels ({why}) against torch {torch_version}",
                     local_version=local)


def package_version(plan: BuildPlan, argv: list[str]) -> str:
    """The base version, plus the local part for builds that compile the kernels (an sdist is source:
    plain version)."""
    if "sdist" in argv or not plan.local_version:
        return base_version()
    return f"{base_version()}+{plan.local_version}"


def _is_toolkit(d: str | None, exists=os.path.exists) -> bool:
    """A CUDA toolkit folder: nvcc and the runtime headers (with their crt/ subfolder) side by side."""
    return bool(d) and exists(os.path.join(d, "bin", "nvcc")) and exists(
        os.path.join(d, "include", "crt", "host_defines.h"))


def cuda_home(env, nvcc_on_path: str | None, exists=os.path.exists, realpath=os.path.realpath) -> str | None:
    """The CUDA toolkit to build against: CUDA_HOME / CUDA_PATH when set, else the toolkit of the nvcc on
    PATH, else /usr/local/cuda. torch's own guess (the parent of the nvcc on PATH) is wrong when that nvcc
    is a wrapper script or a link outside the toolkit (/usr/local/bin/nvcc -> CUDA_HOME=/usr/local, whose
    include/ has no crt/host_defines.h, so every CUDA host file fails to compile); this one checks that
    the folder is a toolkit. Pure (filesystem probes passed in), so tests can ask about other machines."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(name):
            return env[name]  # the user's word; a wrong one fails the build with nvcc's own message
    candidates = []
    if nvcc_on_path:
        candidates += [os.path.dirname(os.path.dirname(p)) for p in (nvcc_on_path, realpath(nvcc_on_path))]
    candidates.append("/usr/local/cuda")
    return next((d for d in candidates if _is_toolkit(d, exists)), None)


def _find_nvcc(home: str | None) -> str | None:
    if home:
        cand = os.path.join(home, "bin", "nvcc")
        if os.path.exists(cand):
            return cand
    return None


def _nvidia_pip_include_dirs() -> list[str]:
    """Headers such as cusparse.h / cublas_v2.h ship in the nvidia-* pip wheels that the CUDA
    build of torch depends on, not in a minimal CUDA toolkit; ATen's CUDA headers need them."""
    dirs = []
    for entry in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cu12/include"):
            d = os.path.join(entry, sub)
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
        # older per-library wheel layout (CUDA 12 builds of torch)
        for lib in ("cuda_runtime", "cublas", "cusparse", "cusolver", "cufft", "curand", "nvtx"):
            d = os.path.join(entry, "nvidia", lib, "include")
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
    return dirs


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _refusing_build_ext(message: str):
    class RefuseBuildExt(_PlainBuildExt):
        def run(self):
            raise SystemExit(message)

    return RefuseBuildExt


def _extensions(plan: BuildPlan):
    """(ext_modules, cmdclass) for the plan."""
    if not plan.build_ext:
        return [], {}
    # csrc/host/: the device-generic orchestration that CPU and CUDA kernels share (built in every variant)
    cpu_sources = _sources("csrc/*.cpp") + _sources("csrc/host/*.cpp") + _sources("csrc/cpu/*.cpp")
    if plan.error:
        # declared (so an sdist still lists the sources), but building it stops with the message
        return [Extension("tds_kernels._C", cpu_sources)], {"build_ext": _refusing_build_ext(plan.error)}
    import torch
    from torch.utils import cpp_extension

    torch_version = torch.__version__.split("+")[0]
    cxx = ["-O3", "-fopenmp"]  # torch picks the C++ standard (C++20 since 2.10)
    define_macros = [("TDS_TORCH_VERSION", f'"{torch_version}"')]
    include_dirs = [os.path.join(ROOT, "csrc")]
    common = dict(include_dirs=include_dirs, define_macros=define_macros, extra_link_args=["-fopenmp"])
    if plan.with_cuda:
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list  # read by cpp_extension for -gencode flags
        sources = cpu_sources + _sources("csrc/cuda/*.cpp") + _sources("csrc/cuda/*.cu")
        define_macros += [("TDS_WITH_CUDA", None), ("TDS_CUDA_ARCH_LIST", f'"{arch_list}"')]
        include_dirs += _nvidia_pip_include_dirs()
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        ext = cpp_extension.CUDAExtension("tds_kernels._C", sources,
                                          extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags}, **common)
    else:
        ext = cpp_extension.CppExtension("tds_kernels._C", cpu_sources, extra_compile_args={"cxx": cxx}, **common)

    base = cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)
    persistent_temp = os.path.join(ROOT, "build", f"temp-{plan.local_version}")

    class PersistentBuildExt(base):
        """Keeps object files in build/temp-<torch>-<kind>/ whatever build_temp pip or setuptools
        picked (editable installs get a fresh temporary one each time), so ninja rebuilds only what
        changed."""

        def finalize_options(self):
            super().finalize_options()
            self.build_temp = persistent_temp

    return [ext], {"build_ext": PersistentBuildExt}


def _machine_plan() -> BuildPlan:
    env = os.environ
    if _flag(env, SKIP_EXT):
        return build_plan(env, None, None, None, False)
    home = cuda_home(env, shutil.which("nvcc"))
    if home and not env.get("CUDA_HOME"):
        # read by torch.utils.cpp_extension when it is imported, for nvcc and the CUDA include folder
        os.environ["CUDA_HOME"] = home
    try:
        import torch
        from torch.utils import cpp_extension  # noqa: F401  (CUDA_HOME is read at import)
    except ImportError:
        return build_plan(env, None, None, None, False)
    nvcc = _find_nvcc(home)
    # Asking for a GPU only matters when the CUDA kernels could be built at all.
    gpu = bool(torch.version.cuda and nvcc) and torch.cuda.is_available()
    return build_plan(env, torch.__version__, torch.version.cuda, nvcc, gpu)


if __name__ == "__main__":  # setuptools.build_meta runs this file as __main__; tests import it
    _plan = _machine_plan()
    print(f"tds_kernels: {_plan.reason}")
    _ext_modules, _cmdclass = _extensions(_plan)
    setup(version=package_version(_plan, sys.argv), ext_modules=_ext_modules, cmdclass=_cmdclass)
