"""Exit 0 when this checkout's editable install and its compiled kernels are up to date, 1 (saying why
not) when scripts/install.sh must run `pip install --no-build-isolation -e .` again.

Up to date means: the distribution `tds` in this environment is an editable install of this directory,
its version is the one setup.py would give now (the base version, and the torch / CPU-or-CUDA kernels
that this machine and these TDS_KERNELS_* variables ask for), and tds_kernels/_C*.so is newer than every
file it is built from and than the installed torch.
"""
from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_INPUTS = ("setup.py", "pyproject.toml", "tds_kernels/version.py", "csrc/**/*")


def why_not_up_to_date() -> str | None:
    try:
        dist = importlib.metadata.distribution("tds")
    except importlib.metadata.PackageNotFoundError:
        return "tds is not installed in this environment"
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not direct.get("dir_info", {}).get("editable") or \
            os.path.realpath(direct.get("url", "").removeprefix("file://")) != os.path.realpath(ROOT):
        return f"tds is installed, but not as an editable install of {ROOT}"
    setup = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="setup_inspection")  # no setup() call
    plan = setup["_machine_plan"]()
    wanted = setup["package_version"](plan, [])
    if dist.version != wanted:
        return f"installed version {dist.version}, this machine and settings build {wanted}"
    if not plan.build_ext:
        return None
    built = glob.glob(os.path.join(ROOT, "tds_kernels", "_C*.so"))
    if not built:
        return "tds_kernels/_C is not built"
    so_time = min(os.path.getmtime(p) for p in built)
    inputs = [p for pattern in BUILD_INPUTS for p in glob.glob(os.path.join(ROOT, pattern), recursive=True)
              if os.path.isfile(p)]
    import torch  # already imported by the plan; reinstalling torch must rebuild

    inputs.append(os.path.join(os.path.dirname(torch.__file__), "version.py"))
    newer = [os.path.relpath(p, ROOT) for p in inputs if os.path.getmtime(p) > so_time]
    if newer:
        return f"{len(newer)} file(s) changed since the kernels were built ({', '.join(sorted(newer)[:3])} ...)"
    return None


if __name__ == "__main__":
    reason = why_not_up_to_date()
    if reason is not None:
        print(f"install.sh: building the kernels: {reason}")
        sys.exit(1)
    print("install.sh: kernels up to date (editable install of this checkout), nothing to build")
