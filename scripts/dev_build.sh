#!/usr/bin/env bash
# Incremental in-place rebuild of tds_kernels._C while developing (ninja keeps objects in
# build/temp-<torch>-<cpu|cuXY>/, shared with pip's builds of this checkout).
# Serialised with a lock so concurrent rebuilds do not trample each other's build directory.
# CUDA sources are compiled when a GPU is visible; TDS_KERNELS_FORCE_CUDA=1 compiles them without one
# (to check that they still compile), TDS_KERNELS_SKIP_CUDA=1 never.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS="${MAX_JOBS:-2}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
exec flock /tmp/tds_build.lock "$PY" setup.py -q build_ext --inplace
