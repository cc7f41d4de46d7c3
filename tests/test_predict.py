"""`tdsclip predict`: top-k classes of demo videos with a model directory; views identical to eval's."""
import json

import numpy as np
import pytest
import torch

import tdsclip
from tdsclip.data.annotations import VideoRecord
from tdsclip.data.dataset import VideoDataset
from tdsclip.data.demo import DemoSpec, render_video, write_vp9
from tdsclip.data.loader import VideoClipLoader
from tdsclip.predict import main as predict_main, video_views

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")

CLASSES = ["left to right", "right to left", "up", "down", "still"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    videos = []
    spec = DemoSpec(size=80, min_frames=20, max_frames=24)  # 80x80: the centre crop really crops
    for i in range(2):
        path = str(root / f"demo_{i}.webm")
        write_vp9(path, render_video(3, i, i % 4, spec))
        videos.append(path)
    model = tdsclip.build_model(tdsclip.TDSCLIPConfig(backbone="tiny", side_dim=64, num_classes=5, num_frames=3))
    model_dir = str(root / "model")
    model.eval().save_pretrained(model_dir, class_names=CLASSES)
    return root, videos, model_dir


@pytest.mark.parametrize("views", ["single", "multi"])
def test_views_are_the_eval_loaders_clips(assets, views):
    _, videos, _ = assets
    split = "val" if views == "single" else "test"
    loader = VideoClipLoader(VideoDataset(records=[VideoRecord(v, 0) for v in videos], kind="ssv2"), batch_size=2,
                             num_frames=3, split=split, image_size=64, backend="pyav", num_workers=0, num_clips=2)
    batch = next(iter(loader))
    expected = batch[0].view(2, -1, *batch[0].shape[1:])
    for i, path in enumerate(videos):
        got = video_views(path, 3, 64, views, num_clips=2, num_crops=3)
        assert got.shape == ((1 if views == "single" else 6), 3, 5, 3, 64, 64)
        assert torch.equal(got, expected[i])


def test_predict_prints_top_k_and_writes_json(assets, capsys, tmp_path):
    _, videos, model_dir = assets
    out = tmp_path / "pred.json"
    assert predict_main(videos + ["--model", model_dir, "--top-k", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert [r["video"] for r in record["videos"]] == videos
    model = tdsclip.from_pretrained(model_dir)
    for r, path in zip(record["videos"], videos):
        assert len(r["top_k"]) == 3 and path in text
        probs = model(video_views(path, 3, 64)).softmax(-1)[0]
        top = probs.topk(3)
        assert [e["class"] for e in r["top_k"]] == top.indices.tolist()
        assert np.allclose([e["prob"] for e in r["top_k"]], top.values.tolist(), atol=1e-6)
        assert [e["name"] for e in r["top_k"]] == [CLASSES[i] for i in top.indices.tolist()]
        assert CLASSES[top.indices[0]] in text


def test_multi_view_averages_softmax_over_six_views(assets, tmp_path):
    _, videos, model_dir = assets
    out = tmp_path / "multi.json"
    assert predict_main([videos[0], "--model", model_dir, "--views", "multi", "--top-k", "5", "--json", str(out)]) == 0
    model = tdsclip.from_pretrained(model_dir)
    probs = model(video_views(videos[0], 3, 64, "multi")).softmax(-1).mean(0)
    got = {e["class"]: e["prob"] for e in json.loads(out.read_text())["videos"][0]["top_k"]}
    assert np.allclose([got[i] for i in range(5)], probs.tolist(), atol=1e-6)


def test_unreadable_files_get_one_line_and_the_others_still_run(assets, capsys, tmp_path):
    _, videos, model_dir = assets
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    missing = str(tmp_path / "missing.webm")
    out = tmp_path / "p.json"
    rc = predict_main([missing, str(junk), videos[1], "--model", model_dir, "--json", str(out)])
    assert rc == 1
    captured = capsys.readouterr()
    err_lines = [line for line in captured.err.splitlines() if line.startswith("predict:")]
    assert len(err_lines) == 2 and missing in err_lines[0] and str(junk) in err_lines[1]
    assert videos[1] in captured.out
    recs = json.loads(out.read_text())["videos"]
    assert "error" in recs[0] and "error" in recs[1] and len(recs[2]["top_k"]) == 5


def test_bad_model_dir_exits_2(assets, capsys, tmp_path):
    _, videos, _ = assets
    assert predict_main([videos[0], "--model", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err
