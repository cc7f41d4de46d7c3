"""Model directories (config.json + model.safetensors): save_pretrained / from_pretrained round trip,
hub ids through huggingface_hub (mocked: no network), push_to_hub, eval on a model directory and the
trainer's best-model directory."""
import json
import os

import pytest
import torch

import tdsclip
from tdsclip import hub
from test_model_utils import make_clips, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _trained_like(model):
    """Non-default BN statistics and weights, so a round trip that dropped buffers would show."""
    model.train()
    with torch.no_grad():
        model(make_clips(2, 3))
    model.eval()
    return model


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = _trained_like(tdsclip.build_model(tiny_config(num_classes=4)))
    model.save_pretrained(str(tmp_path / "m"), class_names=["a", "b", "c", "d"])
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "model.safetensors"]
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["arch"] == "tdsclip" and record["model"]["side_dim"] == 64 and record["class_names"][0] == "a"
    for cls_load in (tdsclip.TDSCLIP.from_pretrained, tdsclip.from_pretrained):
        loaded = cls_load(str(tmp_path / "m"))
        assert isinstance(loaded, tdsclip.TDSCLIP) and not loaded.training
        sd, ld = model.state_dict(), loaded.state_dict()
        assert sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k]) for k in sd)
        clips = make_clips(2, 3)
        with torch.no_grad():
            assert torch.equal(model(clips), loaded(clips))
        assert loaded.class_names == ["a", "b", "c", "d"]
    overridden = tdsclip.from_pretrained(str(tmp_path / "m"), overrides=["fused_ops=false"])
    assert overridden.config.fused_ops is False


def test_saved_config_pins_the_activation_and_drops_the_weight_source(tmp_path):
    """pretrained is written as null (the weights are in the file); quick_gelu is written out so that
    loading without the tag gives the same activation."""
    model = tdsclip.build_model(tiny_config(quick_gelu=True))
    model.save_pretrained(str(tmp_path / "m"))
    values = json.loads((tmp_path / "m" / "config.json").read_text())["model"]
    assert values["pretrained"] is None and values["quick_gelu"] is True


def test_hub_ids_use_snapshot_download(tmp_path, monkeypatch):
    model = tdsclip.build_model(tiny_config())
    model.save_pretrained(str(tmp_path / "snap"))
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(tmp_path / "snap")

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = tdsclip.from_pretrained("someone/tdsclip-tiny")
    assert calls == [("someone/tdsclip-tiny", None, ("config.json", "model.safetensors"))]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_missing_dirs_and_offline_hub_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        tdsclip.from_pretrained(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cannot fetch 'nobody/nothing-here-xyz'"):
        tdsclip.from_pretrained("nobody/nothing-here-xyz")  # HF_HUB_OFFLINE=1, nothing cached


def test_push_to_hub_uploads_config_and_safetensors(tmp_path, monkeypatch):
    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            uploaded["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            uploaded["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            uploaded["files"] = {n: open(os.path.join(folder_path, n), "rb").read() for n in os.listdir(folder_path)}
            return f"https://huggingface.co/{repo_id}/commit/abc"

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = tdsclip.build_model(tiny_config())
    url = model.push_to_hub("me/tiny", class_names=[str(i) for i in range(5)], private=True, token="t")
    assert url.endswith("/commit/abc") and uploaded["repo"] == ("me/tiny", True, True) and uploaded["token"] == "t"
    assert sorted(uploaded["files"]) == ["config.json", "model.safetensors"]
    (tmp_path / "pulled").mkdir()
    for name, data in uploaded["files"].items():
        (tmp_path / "pulled" / name).write_bytes(data)
    again = tdsclip.from_pretrained(str(tmp_path / "pulled"))
    assert again.class_names == [str(i) for i in range(5)]


def test_keep_if_best_only_replaces_on_improvement(tmp_path):
    model = tdsclip.build_model(tiny_config())
    d = str(tmp_path / "best")
    assert hub.keep_if_best(model, d, 40.0, epoch=1)
    assert not hub.keep_if_best(model, d, 40.0, epoch=2)
    assert not hub.keep_if_best(model, d, 10.0, epoch=3)
    assert hub.keep_if_best(model, d, 55.5, epoch=4)
    record = json.loads(open(os.path.join(d, "config.json")).read())
    assert record["val_top1"] == 55.5 and record["epoch"] == 4


def test_trainer_keeps_the_best_model_directory(tmp_path):
    from tdsclip.engine.config import from_dict
    from tdsclip.engine.datasource import TensorDataSource
    from tdsclip.engine.distributed import DistInfo
    from tdsclip.engine.metrics import read_jsonl
    from tdsclip.engine.trainer import Trainer
    from tdsclip.eval import run_eval

    torch.manual_seed(0)
    cfg = from_dict({"name": "tiny", "model": tiny_config(num_frames=2, num_classes=4).to_dict(),
                     "data": {"batch_size": 4, "repeated_aug": 1},
                     "optim": {"epochs": 2, "warmup_epochs": 0, "lr": 1e-3},
                     "runtime": {"output": str(tmp_path / "run"), "amp": "off", "progress": False, "plots": False}})
    model = tdsclip.build_model(cfg.model_config())
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 2, 5, 3, 64, 64), dtype=torch.uint8, generator=g)
    y = torch.arange(12) % 4
    data = TensorDataSource((x[:8], y[:8]), (x[8:], y[8:]), 4, seed=1)
    Trainer(cfg, model, data, DistInfo(), log=lambda *a: None).fit()
    best = tmp_path / "run" / "best"
    record = json.loads((best / "config.json").read_text())
    vals = [r["top1"] for r in read_jsonl(str(tmp_path / "run" / "metrics.jsonl")) if r["kind"] == "val"]
    assert record["val_top1"] == max(vals) and record["train_config"]["name"] == "tiny"
    loaded = tdsclip.from_pretrained(str(best))
    assert loaded.config.num_frames == 2

    # tdsclip eval on the model directory (the data source is handed in: no video files here)
    class Batches:
        class_names = ["a", "b", "c", "d"]

        def eval_batches(self, views):
            return [(x[8:], y[8:], torch.arange(4))]

    summary = run_eval(str(best), ["runtime.device=cpu", "runtime.amp=off"], output=str(tmp_path / "ev"),
                       data=Batches(), log=lambda *a: None)
    assert summary["num_videos"] == 4 and os.path.isfile(summary["json"])
