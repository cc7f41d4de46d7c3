"""``tdsclip eval --zero-shot`` is one path for every architecture with ``zero_shot_logits`` (tdsclip.archs
contract): a DiST checkpoint (text head) is evaluated from class names alone exactly like an M2-CLIP one
(tests/test_m2clip.py::test_trainer_steps_and_zero_shot_eval_end_to_end); architectures without a
zero-shot classifier (TDS-CLIP, DiST's linear head) are a clear error, exit code 2 on the command line."""
from __future__ import annotations

import pytest
import torch

from tdsclip.engine.config import from_dict
from tdsclip.engine.datasource import TensorDataSource
from tdsclip.eval import main as eval_main
from tdsclip.eval import run_eval
from tdsclip.run import run_training

DIST = dict(arch="dist", backbone="tiny", image_size=64, num_frames=4, num_classes=3, temporal_dim=8,
            integration_dim=32, pooling_layers=1)
NAMES = ["pushing", "pulling", "lifting"]


def _train(tmp_path, model: dict):
    cfg = from_dict({"name": "zs", "model": model, "data": {"batch_size": 4},
                     "optim": {"epochs": 1, "warmup_epochs": 0, "lr": 1e-3},
                     "runtime": {"output": str(tmp_path), "amp": "off", "log_every": 1, "progress": False}})
    torch.manual_seed(0)
    x = torch.randint(0, 256, (8, model["num_frames"], 5, 3, 64, 64), dtype=torch.uint8)
    y = torch.arange(8) % 3
    data = TensorDataSource((x[:4], y[:4]), (x[4:], y[4:]), 4, class_names=NAMES)
    result, _ = run_training(cfg, data=data, log=lambda *a: None)
    return result.checkpoint, x[4:]


def test_dist_checkpoint_through_the_shared_zero_shot_eval(tmp_path):
    checkpoint, x = _train(tmp_path, DIST)
    (tmp_path / "names.txt").write_text("archery\nyawning\n")
    val = TensorDataSource((x, torch.tensor([0, 1, 1, 0])), (x, torch.tensor([0, 1, 1, 0])), 4,
                           class_names=["a", "b"])
    summary = run_eval(checkpoint, [], data=val, log=lambda *a: None, zero_shot=True,
                       class_names_file=str(tmp_path / "names.txt"))
    assert summary["zero_shot"] and summary["num_videos"] == 4
    assert summary["class_names"] == ["archery", "yawning"]
    assert summary["json"].endswith("eval_zeroshot_val_single.json")


@pytest.mark.parametrize("model", [dict(DIST, head="linear"),
                                   dict(backbone="tiny", image_size=64, num_frames=4, num_classes=3, side_dim=64)],
                         ids=["dist-linear-head", "tdsclip"])
def test_models_without_zero_shot_are_refused(tmp_path, model, capsys):
    checkpoint, x = _train(tmp_path, model)
    with pytest.raises(ValueError, match="no zero-shot classifier"):
        run_eval(checkpoint, [], data=TensorDataSource((x, torch.zeros(4, dtype=torch.long)),
                                                       (x, torch.zeros(4, dtype=torch.long)), 4, class_names=NAMES),
                 log=lambda *a: None, zero_shot=True)
    assert eval_main([checkpoint, "--zero-shot"]) == 2
    assert "no zero-shot classifier" in capsys.readouterr().err


def test_class_names_need_zero_shot(tmp_path):
    with pytest.raises(SystemExit) as info:
        eval_main([str(tmp_path / "missing.pt"), "--class-names", "names.txt"])
    assert info.value.code == 2
