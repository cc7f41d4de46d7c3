#!/usr/bin/env bash
# Sets up ./.venv with everything tds needs and builds the kernels. Safe to run again (idempotent).
#
#   TDS_TORCH       pip spec for torch (default: torch==2.14.1 torchvision==0.29.1 on x86_64, the CUDA 13.0
#                   build that matches nvcc 13.0 so the CUDA kernels compile; torch==2.9.1 torchvision==0.24.1
#                   on aarch64)
#   TDS_KERNELS_SKIP_CUDA=1 / TDS_KERNELS_SKIP_EXT=1, TORCH_CUDA_ARCH_LIST, MAX_JOBS: see setup.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip setuptools wheel
if [ -z "${TDS_TORCH:-}" ]; then
  case "$(uname -m)" in
    aarch64|arm64) TDS_TORCH="torch==2.9.1 torchvision==0.24.1" ;;
    *) TDS_TORCH="torch==2.14.1 torchvision==0.29.1" ;;
  esac
fi
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "install.sh: installing $TDS_TORCH"
  # shellcheck disable=SC2086
  python -m pip install -q $TDS_TORCH
fi
python -m pip install -q -r requirements.txt
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS="${MAX_JOBS:-2}"
# Without build isolation, so the extension is compiled against the torch installed above.
python -m pip install -q --no-build-isolation -e .
python -m tds_kernels.info
