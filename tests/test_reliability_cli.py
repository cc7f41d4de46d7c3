"""Issue #13 through the command line, on a small generated demo data set: every bad input is exit 2
with a one-line message that says what to do (no traceback), truncated videos are caught, and the
demo config never generates data except in ``tdsclip demo`` / ``tdsclip make-demo-data``."""
import json
import os
import shutil

import pytest
import torch

from tdsclip import cli


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()  # the demo config sets runtime.threads (process-wide)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("relcli") / "data"
    assert cli.main(["make-demo-data", str(root), "--num-train", "8", "--num-val", "4", "--workers", "1",
                     "--min-frames", "24", "--max-frames", "30"]) == 0
    return root


def train_args(data, out, *extra):
    # the demo config, read as plain SSv2-style data (train, no demo evaluation), tiny and short
    return ["train", "--config", "demo", f"data.root={data}", f"--output={out}", "--no-progress",
            "data.dataset=ssv2", "model.num_frames=2", "data.batch_size=4", "data.repeated_aug=1",
            "data.num_workers=0", "optim.epochs=1", "optim.warmup_epochs=0", "runtime.plots=false", *extra]


def one_line_error(capsys, prog="train"):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"{prog}: error:"), err
    return last


def copy_data(data, dest):
    shutil.copytree(data, dest)
    return dest


def truncate(path, keep=1 / 3):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: int(len(raw) * keep)])


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("relcli") / "run"
    assert cli.main(train_args(data, out)) == 0
    return out


# ------------------------------------------------------------------------------------- 6: truncated videos

def test_truncated_video_raise_is_exit_2_in_one_line(data, tmp_path, capsys):
    bad = copy_data(data, tmp_path / "data")
    victim = sorted((bad / "videos").glob("*.webm"))[0]
    truncate(victim)
    train_ids = {e["id"] for e in json.loads((bad / "train.json").read_text())}
    if victim.stem not in train_ids:  # put the damaged file in the training split
        shutil.copy(victim, bad / "videos" / (sorted(train_ids)[0] + ".webm"))
        victim = bad / "videos" / (sorted(train_ids)[0] + ".webm")
    rc = cli.main(train_args(bad, tmp_path / "run", "--on-bad-video", "raise"))
    assert rc == 2
    line = one_line_error(capsys)
    assert victim.name in line and "truncated or damaged" in line and "--on-bad-video" in line


def test_truncated_video_skip_is_left_out_and_counted(data, tmp_path, recwarn):
    bad = copy_data(data, tmp_path / "data")
    ids = sorted(e["id"] for e in json.loads((bad / "train.json").read_text()))
    truncate(bad / "videos" / f"{ids[0]}.webm")
    assert cli.main(train_args(bad, tmp_path / "run", "--on-bad-video", "skip")) == 0
    msgs = [str(w.message) for w in recwarn]
    assert any(f"{ids[0]}.webm" in m and "truncated or damaged" in m for m in msgs)
    assert any("skipped 1 video(s)" in m for m in msgs)


# ------------------------------------------------------------------------------------- 8: exit 2

def test_unwritable_output_directory(data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a directory should be (chmod does not stop root)
    assert cli.main(train_args(data, blocker / "run")) == 2
    assert "cannot be created or written" in one_line_error(capsys)


def test_malformed_yaml_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  side_dim: [64\noptim: {lr: 1\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--config", str(bad)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not valid YAML" in err and "line 3" in err


def test_make_demo_data_into_an_existing_data_set(data, capsys):
    assert cli.main(["make-demo-data", str(data), "--num-train", "8", "--num-val", "4"]) == 2
    line = one_line_error(capsys, "make-demo-data")
    assert "--overwrite" in line and "overwrite=True" not in line


def test_all_bad_validation_set_stops_before_training(data, tmp_path, capsys):
    bad = copy_data(data, tmp_path / "data")
    for e in json.loads((bad / "validation.json").read_text()):
        (bad / "videos" / f"{e['id']}.webm").write_bytes(b"\x1a\x45\xdf\xa3 not a video")
    out = tmp_path / "run"
    assert cli.main(train_args(bad, out)) == 2
    line = one_line_error(capsys)
    assert "none of the 4 videos of the validation set" in line
    assert not list(out.glob("checkpoint_step*.pt")) and not (out / "metrics.jsonl").exists()


def test_resume_and_eval_with_another_model_config_name_the_fields(data, trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert cli.main(train_args(data, run, "--resume", "auto", "model.side_dim=128")) == 2
    assert "model.side_dim: checkpoint 64, now 128" in one_line_error(capsys)
    assert cli.main(["eval", str(run), "model.side_dim=128", "data.num_workers=0"]) == 2
    assert "model.side_dim: checkpoint 64, now 128" in one_line_error(capsys, "eval")


def test_pretrained_bad_file(data, tmp_path, capsys):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"definitely not weights")
    assert cli.main(train_args(data, tmp_path / "run", "--pretrained", str(junk))) == 2
    line = one_line_error(capsys)
    assert "--pretrained" in line and "weights.pt" in line and "weights_only" not in line


# ------------------------------------------------------------------------------------- 9: messages

def test_eval_of_a_run_whose_checkpoint_is_unreadable_names_it(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (ckpt,) = run.glob("checkpoint_step*.pt")
    truncate(ckpt, 0.5)
    assert cli.main(["eval", str(run), "data.num_workers=0"]) == 2
    line = one_line_error(capsys, "eval")
    assert ckpt.name in line and "truncated or corrupt" in line and "without checkpoint" not in line


def test_unreadable_directory_is_not_reported_as_missing_files(data, monkeypatch):
    from tdsclip.data import dataset as ds_mod

    videos = str(data / "videos")
    real_exists, real_access = os.path.exists, os.access
    # what a non-root user sees in a directory without read/search permission (root ignores chmod)
    monkeypatch.setattr(ds_mod.os.path, "exists", lambda p: False if str(p).startswith(videos + os.sep) else real_exists(p))
    monkeypatch.setattr(ds_mod.os, "access", lambda p, mode: False if str(p) == videos else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"cannot read the directory .*videos \(permission denied\)") as e:
        ds_mod.build_dataset("ssv2", "train", str(data))
    assert "missing" not in str(e.value)


def test_train_config_demo_says_the_command_used(data, tmp_path, capsys):
    args = train_args(data, tmp_path / "run", "--max-steps", "1")
    args.remove("data.dataset=ssv2")  # the demo path: train, evaluate, baseline
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "continue with tdsclip train --config demo [same arguments] --resume auto" in out
    assert "tdsclip demo --resume" not in out


# ------------------------------------------------------------------------------------- 10: no silent data

def test_demo_config_with_a_mistyped_root_does_not_generate(tmp_path, capsys):
    typo = tmp_path / "demo_dta"
    args = ["train", "--config", "demo", f"data.root={typo}", f"--output={tmp_path / 'run'}", "--no-progress"]
    assert cli.main(args) == 2
    assert "no demo data set at data.root" in one_line_error(capsys, "demo")
    assert not typo.exists()
