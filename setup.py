"""Builds `tds_kernels._C`, the C++ (and, where possible, CUDA) kernels of the fused ops.

What gets built depends on the machine, as in flash-attention and torchao:
  * CUDA kernels when torch was built with CUDA and nvcc is found (CUDA_HOME or PATH),
    unless TDS_KERNELS_SKIP_CUDA=1;
  * the C++ CPU kernels always, unless TDS_KERNELS_SKIP_EXT=1 (pure-Python install:
    Triton and reference backends only).
TORCH_CUDA_ARCH_LIST picks the GPU targets (default "8.0;9.0+PTX": A100 and H100, plus PTX).
Build without isolation (`pip install --no-build-isolation -e .`) so the extension is compiled
against the torch that is installed, not a fresh copy in a throwaway environment.
"""
from __future__ import annotations

import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


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


def _extensions():
    if _flag("TDS_KERNELS_SKIP_EXT"):
        print("tds_kernels: TDS_KERNELS_SKIP_EXT=1, building no extension (Triton/reference only)")
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("tds_kernels: torch is not installed in the build environment; building no extension. "
              "Install torch first and build with `pip install --no-build-isolation -e .`")
        return [], {}

    nvcc = None
    if cpp_extension.CUDA_HOME:
        cand = os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
        nvcc = cand if os.path.exists(cand) else None
    nvcc = nvcc or shutil.which("nvcc")
    with_cuda = torch.version.cuda is not None and nvcc is not None and not _flag("TDS_KERNELS_SKIP_CUDA")
    if torch.version.cuda is None:
        why = "torch has no CUDA"
    elif nvcc is None:
        why = "nvcc not found (set CUDA_HOME)"
    else:
        why = "TDS_KERNELS_SKIP_CUDA=1"
    print(f"tds_kernels: building {'CPU + CUDA' if with_cuda else 'CPU only (' + why + ')'} kernels "
          f"against torch {torch.__version__}")

    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    torch_version = torch.__version__.split("+")[0]
    cxx = ["-O3", "-fopenmp"]  # torch picks the C++ standard (C++20 since 2.10)
    define_macros = [("TDS_TORCH_VERSION", f'"{torch_version}"')]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if with_cuda:
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list  # read by cpp_extension for -gencode flags
        sources += rel("csrc/cuda/*.cpp") + rel("csrc/cuda/*.cu")
        define_macros += [("TDS_WITH_CUDA", None), ("TDS_CUDA_ARCH_LIST", f'"{arch_list}"')]
        include_dirs += _nvidia_pip_include_dirs()
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        ext = cpp_extension.CUDAExtension(
            "tds_kernels._C", sources, include_dirs=include_dirs, define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags}, extra_link_args=["-fopenmp"])
    else:
        ext = cpp_extension.CppExtension(
            "tds_kernels._C", sources, include_dirs=include_dirs, define_macros=define_macros,
            extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    cmdclass = {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}
    return [ext], cmdclass


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
