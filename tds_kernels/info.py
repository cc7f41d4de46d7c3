"""`python -m tds_kernels.info`: what this install can run, and why not where it cannot."""
from __future__ import annotations

import platform
import sys

import torch

from . import _dispatch, _ext
from .ops.registry import OPS


def report() -> str:
    import tds_kernels  # registers every op's implementations

    lines = [f"tds_kernels {tds_kernels.__version__}",
             f"python {platform.python_version()} on {platform.machine()}",
             f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})"]
    try:
        import triton
        lines.append(f"triton {triton.__version__} (TRITON_INTERPRET={'1' if _dispatch.triton_interpret() else '0'})")
    except ImportError:
        lines.append("triton: not installed")
    if _ext.has_extension():
        flags = _ext.build_flags()
        lines.append("extension tds_kernels._C: built "
                     f"(CUDA kernels: {'yes, arch ' + flags['cuda_arch_list'] if flags['with_cuda'] else 'no'}; "
                     f"OpenMP: {'yes' if flags['openmp'] else 'no'}; against torch {flags['torch_version']})")
        if flags["torch_version"] and flags["torch_version"] != torch.__version__.split("+")[0]:
            lines.append("  WARNING: built against a different torch; rebuild with `pip install --no-build-isolation -e .`")
    else:
        lines.append(f"extension tds_kernels._C: NOT built ({_ext.load_error()})")
        lines.append(f"  to build it: {_ext.INSTALL_HINT}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"GPU {i}: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("GPU: none visible")
    forced = _dispatch.requested_backend(None)
    lines.append(f"{_dispatch.ENV_VAR}={forced or '(unset: automatic)'}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    lines.append("")
    width = max(len(spec.name) for spec in OPS) + 1  # the op column fits the longest registered name
    lines.append(f"{'op':<{width}} device  automatic   backends (available / why not)")
    for op in (spec.name for spec in OPS):
        for dev in devices:
            try:
                auto = _dispatch.resolve(op, None, torch.device(dev), warn=False)
            except RuntimeError as exc:
                auto = f"error: {exc}"
            states = []
            for b in _dispatch.BACKENDS:
                ok, why = _dispatch.backend_available(op, b, dev)
                states.append(f"{b}=yes" if ok else f"{b}=no")
            lines.append(f"{op:<{width}} {dev:<7} {auto:<11} {' '.join(states)}")
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
