"""Issue #13 on the training engine (toy model, in-memory data: each test runs in about a second):
the run-directory lock, ``--resume auto`` with unreadable checkpoints, leftover temporary files, the
``--on-nan skip`` limit, a signal after the final checkpoint, resume with another model config, and
what the messages say."""
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from tdsclip.engine import checkpoint as ckpt
from tdsclip.engine.datasource import TensorDataSource
from tdsclip.engine.distributed import DistInfo
from tdsclip.engine.rundir import RunDirLocked
from tdsclip.engine.trainer import NonFiniteLossError, Trainer

from test_train_engine import ToyVideoNet, make_cfg, toy_data


def train(out, *, lines=None, model=None, **runtime):
    from tdsclip.run import run_training

    cfg = make_cfg(out, runtime={"plots": False, **runtime})
    x, y = toy_data()
    data = TensorDataSource((x[:48], y[:48]), (x[48:], y[48:]), 4, seed=3)
    log = (lambda *a: lines.append(" ".join(map(str, a)))) if lines is not None else (lambda *a: None)
    torch.manual_seed(0)
    return run_training(cfg, model=model or ToyVideoNet(), data=data, log=log)[0]


def write_lock(out, pid, host=None):
    out.mkdir(parents=True, exist_ok=True)
    (out / ".lock").write_text(f'{{"pid": {pid}, "host": "{host or socket.gethostname()}", "since": "earlier"}}')


# ------------------------------------------------------------------------------------- 1: lock

def test_second_training_into_a_running_ones_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(out, other.pid)
        with pytest.raises(RunDirLocked, match=rf"in use by another training \(pid {other.pid} on host "
                                               rf"{socket.gethostname()}"):
            train(out, max_steps=2)
    finally:
        other.kill()
        other.wait()
    assert not list(out.glob("checkpoint_step*.pt")) and not (out / "metrics.jsonl").exists()
    assert (out / ".lock").exists()  # the holder's lock is left alone


def test_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path, capsys):
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(out, dead.pid)
    result = train(out, max_steps=2)
    assert result.global_step == 2
    assert f"taking over the lock of a training that no longer runs (pid {dead.pid}" in capsys.readouterr().err
    assert not (out / ".lock").exists()  # released on exit


def test_lock_is_released_when_training_fails(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError):
        _nan_run(out)
    assert not (out / ".lock").exists()


def _nan_run(out):
    from tdsclip.run import run_training

    cfg = make_cfg(out, runtime={"plots": False})
    x, y = toy_data()
    data = TensorDataSource((x[:48], y[:48]), None, 4, seed=3)
    run_training(cfg, model=ToyVideoNet(), data=data, log=lambda *a: None,
                 fault_hook=lambda step, micro, loss: loss * float("nan"))


# ------------------------------------------------------------------------------------- 2: resume auto

def _truncate(path, keep=0.3):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def test_resume_auto_with_only_an_unreadable_checkpoint_names_it_and_keeps_it(tmp_path):
    out = tmp_path / "run"
    first = train(out, max_steps=3)
    _truncate(first.checkpoint)
    with pytest.raises(ckpt.CheckpointError, match=r"no readable checkpoint.*checkpoint_step00000003\.pt.*truncated"):
        train(out, resume="auto")
    assert os.path.exists(first.checkpoint)  # not moved away, not replaced by a fresh run's files
    assert not [p for p in out.iterdir() if p.name.startswith("previous-")]


def test_resume_auto_falls_back_to_an_older_readable_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    train(out, max_steps=12)  # epoch ends at 12: checkpoint at step 12
    newer = train(out, resume="auto", max_steps=14)
    assert newer.checkpoint.endswith("checkpoint_step00000014.pt")
    _truncate(newer.checkpoint)
    lines = []
    result = train(out, resume="auto", max_steps=16, lines=lines)
    err = capsys.readouterr().err
    assert "skipping 1 unreadable newer checkpoint(s)" in err and "checkpoint_step00000014.pt" in err
    assert "using the older" in err and "checkpoint_step00000012.pt" in err
    assert any("resumed from" in ln and "checkpoint_step00000012.pt" in ln for ln in lines)
    assert result.global_step == 16


def test_partial_checkpoint_files_of_a_killed_write_are_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp_abc123.pt").write_bytes(b"")
    (out / ".tmp_def456.pt").write_bytes(b"half a checkpoint")
    lines = []
    train(out, max_steps=1, lines=lines)
    assert not list(out.glob(".tmp_*.pt"))
    assert sum("partial checkpoint" in ln for ln in lines) == 2


# ------------------------------------------------------------------------------------- 5: skip limit

def test_on_nan_skip_stops_after_the_limit_of_skipped_updates_in_a_row(tmp_path):
    model = ToyVideoNet()
    x, y = toy_data()
    data = TensorDataSource((x[:48], y[:48]), None, 4, seed=3)
    cfg = make_cfg(tmp_path / "run", runtime={"on_nan": "skip", "max_skipped_steps": 4, "plots": False})
    trainer = Trainer(cfg, model, data, DistInfo(), log=lambda *a: None,
                      fault_hook=lambda step, micro, loss: loss * float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"4 optimiser updates in a row .* runtime.max_skipped_steps=4"):
        trainer.fit()
    assert trainer.skipped == 4 and trainer.global_step == 3  # stopped at the 4th bad update, before counting it


def test_on_nan_skip_limit_counts_only_updates_in_a_row(tmp_path):
    x, y = toy_data()
    data = TensorDataSource((x[:48], y[:48]), None, 4, seed=3)
    cfg = make_cfg(tmp_path / "run", runtime={"on_nan": "skip", "max_skipped_steps": 2, "plots": False})
    # every other update is bad: never two in a row, so the run finishes
    trainer = Trainer(cfg, ToyVideoNet(), data, DistInfo(), log=lambda *a: None,
                      fault_hook=lambda step, micro, loss: loss * float("nan") if step % 2 else loss)
    result = trainer.fit()
    assert result.status == "done" and result.skipped_steps == result.global_step // 2


# ------------------------------------------------------------------------------------- 7: late signal

def test_signal_during_the_final_validation_stops_with_the_signal(tmp_path):
    from tdsclip.engine.signals import StopRequest

    x, y = toy_data()

    class SignalledVal(TensorDataSource):
        def val_batches(self):
            stop.request(signal.SIGTERM)  # what the handler does when SIGTERM arrives here
            return super().val_batches()

    stop = StopRequest()
    data = SignalledVal((x[:48], y[:48]), (x[48:], y[48:]), 4, seed=3)
    cfg = make_cfg(tmp_path / "run", optim={"epochs": 1}, runtime={"plots": False})
    result = Trainer(cfg, ToyVideoNet(), data, DistInfo(), log=lambda *a: None, stop=stop).fit()
    assert result.status == "stopped" and result.signal == signal.SIGTERM
    assert result.checkpoint.endswith("checkpoint_step00000012.pt") and os.path.exists(result.checkpoint)


def test_sigterm_right_after_the_final_checkpoint_exits_143(tmp_path, monkeypatch, capsys):
    import tdsclip.train as train_mod

    real = train_mod.run_training
    x, y = toy_data()

    def run_then_signal(cfg, **kw):
        got = real(cfg, model=ToyVideoNet(), data=TensorDataSource((x[:48], y[:48]), None, 4, seed=3), **kw)
        os.kill(os.getpid(), signal.SIGTERM)  # lands after fit() returned, before the command ends
        return got

    def fail(signum, frame):
        raise AssertionError("SIGTERM reached the default handler: the command would have died without a word")

    monkeypatch.setattr(train_mod, "run_training", run_then_signal)
    previous = signal.signal(signal.SIGTERM, fail)
    try:
        rc = train_mod.train_and_report(make_cfg(tmp_path / "run", optim={"epochs": 1}, runtime={"plots": False}))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert rc == 143
    out = capsys.readouterr().out
    assert "SIGTERM received after the final checkpoint" in out and "checkpoint_step00000012.pt" in out


# ------------------------------------------------------------------------------------- 8: model config

def test_resume_with_another_model_config_names_the_fields(tmp_path):
    first = train(tmp_path / "run", max_steps=2)

    class Wider(ToyVideoNet):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(16, 4, bias=False)

    x, y = toy_data()
    data = TensorDataSource((x[:48], y[:48]), None, 4, seed=3)
    cfg = make_cfg(tmp_path / "run")
    cfg.model.side_dim = 128
    trainer = Trainer(cfg, Wider(), data, DistInfo(), log=lambda *a: None)
    with pytest.raises(ValueError, match=r"trained with another model config \(model.side_dim: checkpoint 64, now 128\)"):
        trainer.load(first.checkpoint)


# ------------------------------------------------------------------------------------- 9: messages

def test_resume_auto_in_a_run_without_checkpoints_does_not_say_pass_resume_auto(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")  # an earlier run that wrote no checkpoint
    lines = []
    train(out, resume="auto", max_steps=1, lines=lines)
    text = "\n".join(lines)
    assert "no checkpoint in" in text and "moved its files to" in text
    assert "pass --resume auto" not in text
    lines.clear()
    train(out, max_steps=1, lines=lines)  # without --resume the hint is right
    assert "pass --resume auto" in "\n".join(lines)
