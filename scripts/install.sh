#!/usr/bin/env bash
# Sets up ./.venv with everything tds needs and builds the kernels. Safe to run again: on an
# unchanged tree a re-run takes seconds (nothing is downloaded or recompiled).
#
#   TDS_TORCH       pip spec for torch (default: torch==2.14.1 torchvision==0.29.1, the CUDA 13.0 build
#                   that matches nvcc 13.0, so the CUDA kernels compile; on aarch64 PyPI has the same
#                   version, a CUDA 13 build that also runs on CPU-only machines. A CPU-only torch:
#                   TDS_TORCH="--index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1")
#   TDS_KERNELS_SKIP_CUDA=1 / TDS_KERNELS_FORCE_CUDA=1 / TDS_KERNELS_SKIP_EXT=1, TORCH_CUDA_ARCH_LIST,
#   MAX_JOBS: see setup.py. Without a visible GPU only the C++ CPU kernels are compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
fi
# shellcheck disable=SC1091
. .venv/bin/activate
TDS_TORCH="${TDS_TORCH:-torch==2.14.1 torchvision==0.29.1}"
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "install.sh: installing $TDS_TORCH"
  # shellcheck disable=SC2086
  python -m pip install -q $TDS_TORCH
fi
python -m pip install -q -r requirements.txt
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS="${MAX_JOBS:-2}"
# Without build isolation, so the extension is compiled against the torch installed above. Skipped
# when the editable install and its kernels are up to date (scripts/kernels_up_to_date.py says why
# not); object files persist in build/, so a rebuild recompiles only what changed.
if ! python scripts/kernels_up_to_date.py; then
  python -m pip install -q --no-build-isolation -e .
fi
python -m tds_kernels.info
