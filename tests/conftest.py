"""Test-wide environment. These must be set before triton, open_clip or tds_kernels are imported:
  * TRITON_INTERPRET=1 runs every Triton kernel on the CPU (no GPU in CI);
  * TDS_KERNELS_POISON=1 fills new op outputs with NaN so unwritten elements fail parity;
  * HF_HUB_OFFLINE=1: tests never download weights.
"""
import os

os.environ["TRITON_INTERPRET"] = "1"
os.environ["TDS_KERNELS_POISON"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("TDS_KERNELS_BACKEND", None)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
