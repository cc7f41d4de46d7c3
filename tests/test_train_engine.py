"""The training engine on a toy model: schedule, checkpoints, exact resume, NaN handling, metrics, plots.

The toy model has what matters to the engine — a frozen part, a BatchNorm (buffers), a trainable
head — and takes TDS-CLIP-shaped clips, so each test runs in well under a second.
"""
import json
import math
import os

import pytest
import torch
from torch import nn

from tdsclip.engine import checkpoint as ckpt
from tdsclip.engine.config import from_dict
from tdsclip.engine.datasource import TensorDataSource
from tdsclip.engine.distributed import DistInfo
from tdsclip.engine.metrics import read_jsonl
from tdsclip.engine.schedule import WarmupCosineSchedule, warmup_cosine_factor
from tdsclip.engine.trainer import NonFiniteLossError, Trainer


from toy_models import ToyVideoNet  # tests/toy_models.py


def toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 2, 5, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = (x[:, 0, 0, 0].float().mean(dim=(-1, -2)) > 127).long() + 2 * (x[:, 1, 0, 1].float().mean(dim=(-1, -2)) > 127).long()
    return x, y


def make_cfg(out, optim=None, runtime=None, batch_size=4):
    return from_dict({
        "name": "toy",
        "model": {"backbone": "tiny", "num_classes": 4, "side_dim": 64},
        "data": {"batch_size": batch_size},
        "optim": {"epochs": 3, "warmup_epochs": 1, "lr": 1e-2, **(optim or {})},
        "runtime": {"output": str(out), "amp": "off", "log_every": 1, "progress": False, **(runtime or {})},
    })


def run(out, *, optim=None, runtime=None, resume=None, fault_hook=None, batch_size=4):
    torch.manual_seed(0)
    model = ToyVideoNet()
    x, y = toy_data()
    data = TensorDataSource((x[:48], y[:48]), (x[48:], y[48:]), batch_size, seed=3)
    trainer = Trainer(make_cfg(out, optim, runtime, batch_size), model, data, DistInfo(), log=lambda *a: None,
                      fault_hook=fault_hook)
    if resume:
        trainer.load(resume)
    return model, trainer.fit(), trainer


# --------------------------------------------------------------------------------------------- schedule

def test_warmup_cosine_values():
    f = [warmup_cosine_factor(s, 10, 4) for s in range(11)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[4] == pytest.approx(1.0)                       # cosine starts at the top
    assert f[7] == pytest.approx(0.5)                       # half-way through the decay
    assert f[10] == pytest.approx(0.0, abs=1e-12)           # ends at 0
    assert all(a >= b for a, b in zip(f[4:], f[5:]))        # monotone decay
    assert warmup_cosine_factor(5, 10, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine_factor(10, 10, 4, min_factor=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_factor(0, 10, 11)


def test_schedule_sets_lr_per_step_and_resumes():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = WarmupCosineSchedule(opt, total_steps=20, warmup_steps=4)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[3] == pytest.approx(1e-3)
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched2 = WarmupCosineSchedule(opt2, total_steps=20, warmup_steps=4)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3 * warmup_cosine_factor(10, 20, 4))


# --------------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_contents_load_with_weights_only(tmp_path):
    model, result, trainer = run(tmp_path / "run")
    assert result.status == "done" and result.global_step == 3 * 12
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "schedule", "scaler", "rng", "epoch", "step_in_epoch", "global_step", "config"):
        assert key in state, key
    assert state["config"]["name"] == "toy" and isinstance(state["config"], dict)
    assert len(state["rng"]) == 1 and {"python", "numpy", "torch"} <= set(state["rng"][0])
    assert state["global_step"] == 36
    # the frozen layer is saved too (its weights are random: no pretrained tag to rebuild them from)
    assert "frozen.weight" in state["model"]
    assert torch.equal(state["model"]["head.weight"], model.head.weight)
    # keep_checkpoints=2 (default) pruned the first epoch's checkpoint
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path / "run"))] == [24, 36]
    assert ckpt.find_latest(str(tmp_path / "run")).endswith("checkpoint_step00000036.pt")


def test_atomic_save_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint_step00000001.pt")
    ckpt.atomic_torch_save({"model": {"w": torch.ones(3)}, "config": {}}, path)

    def exploding_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_torch_save({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint_step00000001.pt"]  # no temp file left behind
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_find_latest_skips_broken_and_foreign_files(tmp_path):
    good = str(tmp_path / ckpt.checkpoint_name(5))
    ckpt.atomic_torch_save({"model": {}, "config": {}}, good)
    (tmp_path / ckpt.checkpoint_name(9)).write_bytes(b"not a checkpoint")
    (tmp_path / "notes.pt").write_bytes(b"x")
    assert ckpt.find_latest(str(tmp_path)) == good
    assert ckpt.resolve_resume("auto", str(tmp_path / "empty")) is None
    with pytest.raises(FileNotFoundError):
        ckpt.resolve_resume(str(tmp_path / "missing.pt"), str(tmp_path))
    with pytest.raises(ValueError, match="not a torch.save file") as e:
        ckpt.load_checkpoint(str(tmp_path / ckpt.checkpoint_name(9)))
    assert "weights_only" not in str(e.value)  # never torch's advice to load with weights_only=False


def test_checkpoint_refuses_pickled_objects(tmp_path):
    # An "unsafe" file (arbitrary pickled object) must not load.
    path = tmp_path / "checkpoint_step00000001.pt"
    torch.save({"model": {}, "config": {}, "evil": nn.Linear(1, 1)}, path)
    with pytest.raises(ValueError, match=r"pickled Python objects \(torch.nn.modules.linear.Linear\)") as e:
        ckpt.load_checkpoint(str(path))
    assert "weights_only" not in str(e.value)  # never torch's advice to load with weights_only=False


# --------------------------------------------------------------------------------------------- resume

@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, grad_accum):
    optim = {"grad_accum": grad_accum}
    full, res_full, _ = run(tmp_path / "full", optim=optim)
    steps = res_full.global_step
    stop_at = steps // 3 + 1  # inside the second epoch, not on an epoch boundary
    _, res_stop, _ = run(tmp_path / "cut", optim=optim, runtime={"max_steps": stop_at})
    assert res_stop.status == "stopped" and res_stop.global_step == stop_at
    state = ckpt.load_checkpoint(res_stop.checkpoint)
    assert state["step_in_epoch"] == stop_at - steps // 3 and state["epoch"] == 1
    resumed, res_resumed, _ = run(tmp_path / "cut", optim=optim, resume=res_stop.checkpoint)
    assert res_resumed.status == "done" and res_resumed.global_step == steps
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    # the metrics log of the resumed run equals the uninterrupted one (plus two event lines)
    strip = lambda recs: [(r["kind"], r["step"], r.get("loss"), r.get("lr")) for r in recs if r["kind"] != "event"]
    full_log = read_jsonl(str(tmp_path / "full" / "metrics.jsonl"))
    cut_log = read_jsonl(str(tmp_path / "cut" / "metrics.jsonl"))
    assert strip(full_log) == strip(cut_log)
    assert [r["event"] for r in cut_log if r["kind"] == "event"] == ["stopped", "resume"]


def test_resume_auto_from_run_dir_after_stop(tmp_path):
    _, res, _ = run(tmp_path / "r", runtime={"max_steps": 5})
    assert ckpt.resolve_resume("auto", str(tmp_path / "r")) == res.checkpoint
    assert ckpt.resolve_resume(str(tmp_path / "r"), "elsewhere") == res.checkpoint


# --------------------------------------------------------------------------------------------- NaN handling

def _nan_at(step_to_break):
    def hook(global_step, batch_index, loss):
        return loss * float("nan") if global_step == step_to_break else loss
    return hook


def test_nan_loss_stops_naming_step_and_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError) as exc:
        run(tmp_path / "n", fault_hook=_nan_at(15))  # epoch 2 (12 steps per epoch)
    msg = str(exc.value)
    assert "optimiser step 16" in msg and "epoch 2/3" in msg
    assert "checkpoint_step00000012.pt" in msg and "--on-nan skip" in msg
    events = [r for r in read_jsonl(str(tmp_path / "n" / "metrics.jsonl")) if r["kind"] == "event"]
    assert events[-1]["event"] == "nonfinite_loss" and events[-1]["action"] == "stop"


def test_nan_loss_before_first_checkpoint_says_none_yet(tmp_path):
    with pytest.raises(NonFiniteLossError, match="none yet"):
        run(tmp_path / "n0", fault_hook=_nan_at(0))


def test_nan_skip_drops_only_that_update(tmp_path):
    # Skipping must leave weights, optimiser and BN statistics exactly as before the bad batch.
    broken, res, trainer = run(tmp_path / "s", runtime={"on_nan": "skip", "max_steps": 6}, fault_hook=_nan_at(5))
    assert res.skipped_steps == 1 and res.global_step == 6
    ref, _, _ = run(tmp_path / "ref", runtime={"max_steps": 5})
    for (k, a), (_, b) in zip(ref.state_dict().items(), broken.state_dict().items()):
        assert torch.equal(a, b), k  # step 6 (index 5) was skipped: state equals the run stopped after 5
    assert all(torch.isfinite(p).all() for p in broken.parameters())
    events = [r for r in read_jsonl(str(tmp_path / "s" / "metrics.jsonl")) if r["kind"] == "event"]
    assert events[0]["event"] == "nonfinite_loss" and events[0]["action"] == "skip"


# --------------------------------------------------------------------------------------------- metrics, plots

def test_metrics_log_and_plots_written(tmp_path):
    _, res, _ = run(tmp_path / "m")
    recs = read_jsonl(str(tmp_path / "m" / "metrics.jsonl"))
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 37))
    assert all({"loss", "top1", "lr", "clips_per_s", "epoch"} <= set(r) for r in train)
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1, 2, 3]
    vals = [r for r in recs if r["kind"] == "val"]
    assert len(vals) == 3 and vals[-1]["num"] == 16
    assert train[0]["lr"] < train[11]["lr"]  # warm-up
    assert train[-1]["lr"] < 1e-3            # cosine decay to ~0
    for name in ("loss.png", "accuracy.png", "lr.png"):
        data = (tmp_path / "m" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert res.val["num"] == 16


def test_training_learns_the_toy_task(tmp_path):
    # the toy labels are a function of the input: the loss must fall
    _, res, _ = run(tmp_path / "l", optim={"epochs": 6})
    recs = [r for r in read_jsonl(str(tmp_path / "l" / "metrics.jsonl")) if r["kind"] == "epoch"]
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]


def test_fp16_amp_uses_grad_scaler_and_saves_its_state(tmp_path):
    _, res, trainer = run(tmp_path / "fp16", runtime={"amp": "fp16", "max_steps": 3})
    assert trainer.scaler.is_enabled()
    state = ckpt.load_checkpoint(res.checkpoint)
    assert state["scaler"] and "scale" in state["scaler"]
    json.dumps(state["config"])  # plain data


# --------------------------------------------------------------------------------------------- data failures

class _DyingSource(TensorDataSource):
    """Its loader "dies" at batch 5 of epoch 0, as worker processes do on a process-group SIGTERM."""

    def __init__(self, *a, stop=None, **k):
        super().__init__(*a, **k)
        self.stop = stop

    def train_batches(self, epoch, start_batch=0):
        for b, batch in enumerate(super().train_batches(epoch, start_batch), start=start_batch):
            if epoch == 0 and b == 5:
                if self.stop is not None:
                    self.stop.request(15)
                raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
            yield batch


@pytest.mark.parametrize("signalled", [True, False])
def test_loader_death_after_a_stop_request_still_checkpoints(tmp_path, signalled):
    from tdsclip.engine.signals import StopRequest

    stop = StopRequest()
    x, y = toy_data()
    data = _DyingSource((x[:48], y[:48]), None, 4, seed=3, stop=stop if signalled else None)
    torch.manual_seed(0)
    trainer = Trainer(make_cfg(tmp_path / "d"), ToyVideoNet(), data, DistInfo(), log=lambda *a: None, stop=stop)
    if not signalled:  # an ordinary data error is not swallowed
        with pytest.raises(RuntimeError, match="killed by signal"):
            trainer.fit()
        return
    result = trainer.fit()
    assert result.status == "stopped" and result.global_step == 5 and result.signal == 15
    assert ckpt.load_checkpoint(result.checkpoint)["step_in_epoch"] == 5


def test_fresh_run_in_a_used_directory_archives_the_earlier_run(tmp_path):
    from tdsclip.run import run_training

    out = tmp_path / "reuse"

    def once(**runtime):
        cfg = make_cfg(out, runtime={"max_steps": 3, "plots": False, **runtime})
        x, y = toy_data()
        data = TensorDataSource((x[:48], y[:48]), None, 4, seed=3)
        return run_training(cfg, model=ToyVideoNet(), data=data, log=lambda *a: None)[0]

    first = once()
    again = once()  # no --resume: the first run's files move to previous-*/
    archived = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(archived) == 1 and (archived[0] / os.path.basename(first.checkpoint)).exists()
    assert (archived[0] / "metrics.jsonl").exists()
    assert [r["step"] for r in read_jsonl(str(out / "metrics.jsonl")) if r["kind"] == "train"] == [1, 2, 3]
    assert ckpt.find_latest(str(out)) == again.checkpoint
    resumed = once(resume="auto", max_steps=5)  # --resume auto continues in place, archives nothing
    assert resumed.global_step == 5 and len([p for p in out.iterdir() if p.name.startswith("previous-")]) == 1
