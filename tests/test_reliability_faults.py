"""Fault injection: a training killed with SIGKILL five times — mid-step and inside checkpoint writes —
and resumed with ``--resume auto`` each time ends with bit-for-bit the weights of an uninterrupted run.

Stochastic layers are on (dropout, stochastic depth) and the augmentation draws from torch (a per-batch
generator), numpy and Python's ``random``, so every generator a step draws from must be saved in the
checkpoints and restored: forgetting any one of them changes the weights. Each child is this file run
as a script (``python test_reliability_faults.py OUT KILL``); it kills itself with SIGKILL at the planned
moment (a fixed-seed plan: random global steps, and the "temporary file created, still empty" and
"bytes written, not yet renamed" stages of a checkpoint write), which is a real kill -9 at a known point.
The model is a toy (torch only: each child starts in about a second); tests/test_train_signal.py and
tests/test_demo.py cover the real model's resume.
"""
import glob
import os
import random
import signal
import subprocess
import sys

import numpy as np
import torch
from torch import nn

from tdsclip.engine.config import from_dict
from tdsclip.engine.datasource import TensorDataSource

STEPS_PER_EPOCH = 8
EPOCHS = 3
TOTAL = STEPS_PER_EPOCH * EPOCHS


class StochasticToyNet(nn.Module):
    """Frozen projection, BatchNorm, a residual block under stochastic depth, dropout before the head."""

    def __init__(self, num_classes=4, drop_path=0.3, head_dropout=0.3):
        super().__init__()
        self.frozen = nn.Linear(24, 32)
        self.frozen.requires_grad_(False)
        self.bn = nn.BatchNorm1d(32)
        self.block = nn.Sequential(nn.Linear(32, 32), nn.GELU())
        self.drop_path = drop_path
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(32, num_classes)

    def forward(self, clips):  # (B, T, 5, 3, H, W)
        x = clips.float().mean(dim=(-1, -2)).flatten(1)[:, :24] / 255
        x = self.bn(self.frozen(x))
        branch = self.block(x)
        if self.training and self.drop_path > 0:  # per-sample stochastic depth, drawn from torch's global RNG
            keep = (torch.rand(x.shape[0], 1) >= self.drop_path).float() / (1 - self.drop_path)
            branch = branch * keep
        return self.head(self.dropout(x + branch))


def augment(x, g):
    """Per-batch torch generator (data-source contract) plus the global numpy and Python generators."""
    noise = torch.randint(0, 16, x.shape, generator=g, dtype=torch.uint8)
    x = x // 2 + noise
    if np.random.rand() < 0.5:
        x = x.flip(-1)
    return torch.roll(x, random.randint(0, 3), dims=-2)


def make(out, resume="auto"):
    cfg = from_dict({"name": "faults", "model": {"backbone": "tiny", "num_classes": 4, "side_dim": 64},
                     "data": {"batch_size": 4},
                     "optim": {"epochs": EPOCHS, "warmup_epochs": 1, "lr": 1e-2},
                     "runtime": {"output": str(out), "amp": "off", "device": "cpu", "log_every": 1, "seed": 5,
                                 "progress": False, "plots": False, "resume": resume, "keep_checkpoints": 2}})
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 2, 5, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (40,), generator=g)
    data = TensorDataSource((x[:32], y[:32]), (x[32:], y[32:]), 4, seed=11, transform=augment)
    return cfg, data


def train(out, kill: str = "none"):
    """Trains (resuming from the newest readable checkpoint); ``kill``: "step:N" dies at global step N
    (after that step's forward), "write:STAGE" at the first checkpoint write's STAGE."""
    from tdsclip.engine import checkpoint as ckpt
    from tdsclip.run import run_training

    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    kind, _, arg = kill.partition(":")
    fault_hook = None
    if kind == "step":
        def fault_hook(step, micro, loss):
            if step == int(arg):
                die()
            return loss
    elif kind == "write":
        ckpt._write_hook = lambda stage: die() if stage == arg else None
    cfg, data = make(out)
    torch.manual_seed(0)
    model = StochasticToyNet()
    result, _ = run_training(cfg, model=model, data=data, fault_hook=fault_hook, log=lambda *a: None)
    return model, result


def test_five_sigkills_then_resume_match_an_uninterrupted_run(tmp_path):
    from tdsclip.engine import checkpoint as ckpt

    out = tmp_path / "killed"
    env = dict(os.environ, TDS_TEST_THREADS=str(torch.get_num_threads()),
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                           os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(2024)
    kinds = ["step", "write:created", "step", "write:written", "step"]
    rng.shuffle(kinds)
    log = []
    for kind in kinds:
        latest = ckpt.find_latest(str(out)) if out.exists() else None
        done = ckpt.load_checkpoint(latest)["global_step"] if latest else 0
        kill = f"step:{rng.randint(done, TOTAL - 1)}" if kind == "step" else kind
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(out), kill], env=env,
                              capture_output=True, text=True, timeout=300)
        log.append((kill, done))
        assert proc.returncode == -signal.SIGKILL, f"{kill}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
        if kill == "write:created":  # killed between creating the temporary file and writing into it
            assert any(os.path.getsize(p) == 0 for p in glob.glob(str(out / ".tmp_*.pt"))), log
    assert (out / ".lock").exists()  # left by the last kill; the resume below takes it over
    resumed, result = train(out)
    assert result.status == "done" and result.global_step == TOTAL, log
    assert not glob.glob(str(out / ".tmp_*.pt")) and not (out / ".lock").exists()
    full, _ = train(tmp_path / "full", "none")
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"{k} differs after resumes {log}"


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("TDS_TEST_THREADS", "1")))  # same arithmetic as the parent
    train(sys.argv[1], sys.argv[2])
    sys.exit(0)
