"""A real SIGTERM to a training process mid-epoch: it writes a checkpoint at the next step boundary and
exits with 143; resuming from that checkpoint reaches bit-for-bit the weights of an uninterrupted run.

The child is this file run as a script (``python test_train_signal.py OUT``): a toy model on an
in-memory data source slowed down to ~0.1 s per batch, so the parent can signal it mid-epoch.
"""
import os
import signal
import subprocess
import sys
import time

import torch

from tdsclip.engine.config import from_dict
from tdsclip.engine.datasource import TensorDataSource

STEPS_PER_EPOCH = 12
EPOCHS = 2


from toy_models import ToyVideoNet  # tests/toy_models.py


def make(out, delay=0.0):
    cfg = from_dict({"name": "sig", "model": {"backbone": "tiny", "num_classes": 4, "side_dim": 64},
                     "data": {"batch_size": 4},
                     "optim": {"epochs": EPOCHS, "warmup_epochs": 1, "lr": 1e-2},
                     "runtime": {"output": str(out), "amp": "off", "device": "cpu", "log_every": 1,
                                 "progress": False, "plots": False}})
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (56, 2, 5, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (56,), generator=g)

    def slow(batch, gen):  # stands in for decoding time; the data is unchanged
        time.sleep(delay)
        return batch

    data = TensorDataSource((x[:48], y[:48]), (x[48:], y[48:]), 4, seed=11, transform=slow if delay else None)
    torch.manual_seed(0)
    return cfg, ToyVideoNet(), data


def child(out):
    from tdsclip.run import run_training

    cfg, model, data = make(out, delay=0.15)
    result, _ = run_training(cfg, model=model, data=data, log=lambda *a: None)
    return 128 + result.signal if result.signal else 0


def test_sigterm_mid_epoch_checkpoints_then_resume_matches(tmp_path):
    from tdsclip.engine import checkpoint as ckpt
    from tdsclip.engine.distributed import DistInfo
    from tdsclip.engine.metrics import read_jsonl
    from tdsclip.engine.trainer import Trainer

    out = tmp_path / "sig"
    env = dict(os.environ, TDS_TEST_THREADS=str(torch.get_num_threads()), PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, __file__, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 180
    try:
        # wait until the child is inside the second epoch, then signal it
        while time.time() < deadline:
            if metrics.exists() and any(r.get("step", 0) >= STEPS_PER_EPOCH + 2 for r in read_jsonl(str(metrics))):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"child ended before the signal: {proc.communicate()}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    latest = ckpt.find_latest(str(out))
    state = ckpt.load_checkpoint(latest)
    stopped_at = state["global_step"]
    assert STEPS_PER_EPOCH + 2 <= stopped_at < EPOCHS * STEPS_PER_EPOCH
    assert state["epoch"] == 1 and state["step_in_epoch"] == stopped_at - STEPS_PER_EPOCH  # mid-epoch
    events = [r for r in read_jsonl(str(metrics)) if r["kind"] == "event"]
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "SIGTERM received"

    cfg, resumed, data = make(out)
    trainer = Trainer(cfg, resumed, data, DistInfo(), log=lambda *a: None)
    trainer.load(latest)
    assert trainer.fit().global_step == EPOCHS * STEPS_PER_EPOCH

    cfg, full, data = make(tmp_path / "full")
    Trainer(cfg, full, data, DistInfo(), log=lambda *a: None).fit()
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("TDS_TEST_THREADS", "1")))  # same arithmetic as the parent
    sys.exit(child(sys.argv[1]))
