"""Command-line parsing and the YAML training configs: shipped configs, overrides, flags, errors."""
import argparse
import os
import subprocess
import sys

import pytest
import yaml

from tdsclip import cli
from tdsclip.engine.config import available_configs, from_dict, load_config
from tdsclip.config_rules import parse_value
from tdsclip.engine.overrides import apply_overrides
from tdsclip.run import add_train_arguments, overrides_from_args, resolve_config

SHIPPED = ["demo", "k400_b16", "k400_l14", "ssv1_b16", "ssv1_l14", "ssv2_b16", "ssv2_l14"]


def tdsclip_recipes(names):
    """The listed configs less the other architectures' demos (demo_<arch>)."""
    return [n for n in names if not n.startswith("demo_")]


def parse_train(argv):
    return resolve_config(add_train_arguments(argparse.ArgumentParser()).parse_intermixed_args(argv))


def test_shipped_configs_follow_the_published_recipe():
    # the TDS-CLIP recipes, plus one demo config per other architecture (demo_<arch>)
    assert tdsclip_recipes(available_configs()) == SHIPPED
    for name in SHIPPED[1:]:
        cfg = load_config(name)
        large = name.endswith("l14")
        assert cfg.model.backbone == ("ViT-L-14" if large else "ViT-B-16")
        assert cfg.model.side_dim == (512 if large else 320)
        assert cfg.model.pretrained == "openai"
        assert cfg.optim.lr == (1e-4 if large else 1e-3)
        assert cfg.optim.betas == [0.9, 0.999] and cfg.optim.weight_decay == 0.15 and cfg.optim.decay_all
        assert cfg.optim.warmup_epochs == 4 and cfg.optim.min_lr_ratio == 0.0
        assert cfg.optim.epochs == (40 if name.startswith("ssv1") else 30)
        assert cfg.optim.label_smoothing == 0.1
        assert cfg.data.batch_size == 32 and cfg.data.repeated_aug == 2
        assert cfg.runtime.amp == "bf16" and cfg.runtime.seed == 1024
        assert cfg.model.num_classes == (400 if name.startswith("k400") else 174)
        assert cfg.eval.views == "multi" and cfg.eval.num_crops == 3
        assert cfg.eval.num_clips == (4 if name.startswith("k400") else 2)
        assert cfg.name == name and cfg.runtime.output == f"runs/{name}"
    demo = load_config("demo")
    assert demo.data.dataset == "demo" and demo.model.backbone == "tiny" and demo.model.pretrained is None


def test_overrides_positional_set_and_flags_with_precedence():
    cfg = parse_train(["--config", "ssv2_b16", "model.side_dim=512", "--set", "optim.lr=5e-4",
                       "--set", "optim.betas=[0.8, 0.99]", "runtime.amp=off", "--amp", "fp16", "--seed", "7",
                       "--no-fused-ops", "--grad-checkpoint", "--grad-accum", "4", "--output", "/tmp/x",
                       "--resume", "auto", "--device", "cpu", "--on-nan", "skip", "--pretrained", "none"])
    assert cfg.model.side_dim == 512
    assert cfg.optim.lr == 5e-4 and cfg.optim.betas == [0.8, 0.99]
    assert cfg.runtime.amp == "fp16"          # the flag wins over the positional override
    assert cfg.runtime.seed == 7 and cfg.optim.grad_accum == 4
    assert cfg.model.fused_ops is False and cfg.model.grad_checkpoint is True
    assert cfg.runtime.output == "/tmp/x" and cfg.runtime.resume == "auto" and cfg.runtime.device == "cpu"
    assert cfg.runtime.on_nan == "skip" and cfg.model.pretrained is None
    assert parse_train(["--config", "demo", "--fused-ops"]).model.fused_ops is True


def test_yaml_values_parse_like_a_user_means_them():
    assert parse_value("1e-4") == 1e-4 and isinstance(parse_value("1e-4"), float)
    assert parse_value("8") == 8 and parse_value("true") is True and parse_value("null") is None
    assert parse_value("off") == "off" and parse_value("[1, 2]") == [1, 2]
    assert load_config("demo", ["runtime.amp=off"]).runtime.amp == "off"
    assert load_config("demo", ["runtime.progress=no"]).runtime.progress is False


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("model.side_dimm=64", "unknown config key 'model.side_dimm' (did you mean 'model.side_dim'?)"),
    ("runtime.amp=fp8", "runtime.amp must be one of"),
    ("optim.epochs=0", "optim.epochs must be positive"),
    ("optim.epochs=2.5", "optim.epochs: expected an integer, got 2.5"),
    ("optim.lr=fast", "optim.lr: expected a finite number, got 'fast'"),
    ("data.repeated_aug=2 data.batch_size=33", "multiple of data.repeated_aug"),  # demo.yaml has repeated_aug 1
    ("optim.warmup_epochs=50", "warmup_epochs"),
    ("model.side_dim=100", "side_dim"),
    ("nosuchsection.x=1", "unknown config key 'nosuchsection'"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises((ValueError, TypeError)) as exc:
        load_config("demo", override.split(" "))
    assert message in str(exc.value)


def test_bad_config_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(ValueError, match="shipped configs: demo, .*k400_b16"):
        load_config("ssv3_b16")
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.yaml"))


def test_user_yaml_with_base_inheritance(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "ssv2_l14", "optim": {"epochs": 5}, "data": {"root": "/d"}}))
    cfg = load_config(str(path), ["runtime.seed=3"])
    assert cfg.name == "mine" and cfg.model.backbone == "ViT-L-14" and cfg.optim.lr == 1e-4
    assert cfg.optim.epochs == 5 and cfg.data.root == "/d" and cfg.runtime.seed == 3
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: " + str(loop) + "\n")
    with pytest.raises(ValueError, match="loops"):
        load_config(str(loop))


def test_config_round_trips_through_its_dict():
    cfg = load_config("k400_l14", ["optim.grad_accum=2"])
    again = from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_apply_overrides_rejects_malformed_items():
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["model.side_dim"])
    with pytest.raises(ValueError, match="empty key"):
        apply_overrides({}, ["model..x=1"])
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides({"optim": {"lr": 1}}, ["optim.lr.x=2"])


def test_cli_dispatch_and_errors(capsys):
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert cli.main(["configs"]) == 0
    assert tdsclip_recipes(capsys.readouterr().out.split()) == SHIPPED
    assert cli.main(["train", "--config", "ssv2_l14", "--print-config", "optim.epochs=6"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["epochs"] == 6 and printed["model"]["backbone"] == "ViT-L-14"
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--config", "demo", "optim.nope=1"])
    assert exc.value.code == 2
    assert "unknown config key 'optim.nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "stray-argument"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_console_script_and_module_entry_points():
    # `python -m tdsclip.train`, `python -m tdsclip.cli train` and the `tdsclip` script reach the same code
    # (--help and `configs` import neither torch nor open_clip, so these subprocesses are quick)
    for mod in (["-m", "tdsclip.train"], ["-m", "tdsclip.cli", "train"], ["-m", "tdsclip.eval"],
                ["-m", "tdsclip.cli", "demo"]):
        out = subprocess.run([sys.executable, *mod, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "--amp" in out.stdout
    script = os.path.join(os.path.dirname(sys.executable), "tdsclip")
    if os.path.exists(script):  # installed with pip install -e .
        out = subprocess.run([script, "configs"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and tdsclip_recipes(out.stdout.split()) == SHIPPED


def test_eval_of_a_missing_checkpoint_is_a_clear_error(capsys):
    assert cli.main(["eval", "/nonexistent/ckpt.pt"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_overrides_from_args_lists_flags_last():
    args = add_train_arguments(argparse.ArgumentParser()).parse_intermixed_args(["a.b=1", "--lr", "0.5", "--no-progress"])
    assert overrides_from_args(args) == ["a.b=1", "optim.lr=0.5", "runtime.progress=false"]


def test_summary_and_make_demo_data_are_wired(capsys):
    assert cli.main(["summary", "--config", "demo", "--no-memory", "--no-flops"]) == 0
    assert "TDS-CLIP tiny" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["make-demo-data", "--help"])
    assert exc.value.code == 0 and "--num-train" in capsys.readouterr().out


def test_train_and_demo_do_not_import_each_other():
    # both build on tdsclip.run; train hands a demo config to demo.run_demo, and nothing goes back
    import ast
    import pathlib

    def imported(name):
        tree = ast.parse((pathlib.Path(cli.__file__).parent / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}

    assert "train" not in imported("demo") and "run" in imported("demo")
    assert not {"train", "demo"} & imported("run")
