"""Annotation parsers and build_dataset on small files of each format (tdsclip.data.annotations / dataset)."""
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from tdsclip.data import MissingFilesWarning, build_dataset
from tdsclip.data.annotations import (count_frame_files, kinetics_filename, parse_kinetics, parse_list_file,
                                      parse_ssv1, parse_ssv2, ssv2_class_name)
from tdsclip.data.dataset import SSV2_FLIP_PAIRS, left_right_pairs


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return path


@pytest.fixture
def ssv2_dir(tmp_path):
    labels = {"Holding something": "0", "Pushing something from left to right": "1",
              "Pushing something from right to left": "2"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    train = [{"id": "10", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
             {"id": "11", "label": "pushing pen from left to right",
              "template": "Pushing [something] from left to right", "placeholders": ["pen"]},
             {"id": "12", "label": "x", "template": "Pushing [something] from right to left", "placeholders": ["x"]}]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "test.json").write_text(json.dumps([{"id": "13"}]))
    for i in (10, 11, 12, 13):
        touch(str(tmp_path / "videos" / f"{i}.webm"))
    return tmp_path


def test_ssv2(ssv2_dir):
    recs, classes = parse_ssv2(str(ssv2_dir / "labels.json"), str(ssv2_dir / "train.json"), "/v")
    assert classes == ["Holding something", "Pushing something from left to right",
                       "Pushing something from right to left"]
    assert [(r.path, r.label, r.video_id) for r in recs] == [("/v/10.webm", 0, "10"), ("/v/11.webm", 1, "11"),
                                                             ("/v/12.webm", 2, "12")]
    assert ssv2_class_name("Putting [something] onto [something]") == "Putting something onto something"
    ds = build_dataset("ssv2", "train", str(ssv2_dir))
    assert len(ds) == 3 and ds.kind == "ssv2" and ds.num_classes == 3
    assert ds.records[0].path == str(ssv2_dir / "videos" / "10.webm")
    assert ds.flip_pairs == ()  # not the 174-class SSv2, no flip_pairs.json
    test = build_dataset("ssv2", "test", str(ssv2_dir))
    assert [r.label for r in test.records] == [-1]


def test_ssv2_flip_pairs(ssv2_dir):
    (ssv2_dir / "flip_pairs.json").write_text("[[1, 2]]")
    ds = build_dataset("ssv2", "train", str(ssv2_dir))
    assert ds.flip_pairs == ((1, 2),) and ds.flip_label_map().tolist() == [0, 2, 1]
    assert build_dataset("ssv2", "train", str(ssv2_dir), flip_pairs=[]).flip_pairs == ()
    with pytest.raises(ValueError, match="flip pair"):
        build_dataset("ssv2", "train", str(ssv2_dir), flip_pairs=[(1, 7)])


def test_ssv2_published_pairs_for_174_classes(tmp_path):
    labels = {f"class {i}": str(i) for i in range(174)}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps([{"id": "1", "template": "class 3"}]))
    touch(str(tmp_path / "1.webm"))
    ds = build_dataset("ssv2", "train", str(tmp_path))
    m = ds.flip_label_map()
    assert ds.flip_pairs == SSV2_FLIP_PAIRS
    assert (m[86], m[87], m[93], m[94], m[166], m[167]) == (87, 86, 94, 93, 167, 166)
    assert (np.delete(m, [86, 87, 93, 94, 166, 167]) == np.delete(np.arange(174), [86, 87, 93, 94, 166, 167])).all()


def test_ssv2_errors(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"a": "0", "b": "2"}))
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(ValueError, match="without gaps"):
        parse_ssv2(str(tmp_path / "labels.json"), str(tmp_path / "train.json"), "")
    (tmp_path / "labels.json").write_text(json.dumps({"a": "0"}))
    (tmp_path / "train.json").write_text(json.dumps([{"id": "1", "template": "Unknown [thing]"}]))
    with pytest.raises(ValueError, match="not in"):
        parse_ssv2(str(tmp_path / "labels.json"), str(tmp_path / "train.json"), "")
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_ssv2(str(tmp_path / "labels.json"), str(tmp_path / "train.json"), "")
    with pytest.raises(FileNotFoundError, match="labels"):
        build_dataset("ssv2", "train", str(tmp_path / "nowhere"))


def test_kinetics(tmp_path):
    csv = ("label,youtube_id,time_start,time_end,split\n"
           "abseiling,---QUuC4vJs,3,13,train\n"
           "air drumming,--nQbRBEz2s,104,114,train\n"
           "abseiling,zzz,0.0,10.0,train\n")
    (tmp_path / "train.csv").write_text(csv)
    assert kinetics_filename("abc", "14", "24") == "abc_000014_000024.mp4"
    touch(str(tmp_path / "train" / "---QUuC4vJs_000003_000013.mp4"))  # flat layout
    touch(str(tmp_path / "train" / "air_drumming" / "--nQbRBEz2s_000104_000114.mp4"))  # class folders
    recs, classes = parse_kinetics(str(tmp_path / "train.csv"), str(tmp_path / "train"))
    assert classes == ["abseiling", "air drumming"]
    assert [r.label for r in recs] == [0, 1, 0]
    assert recs[1].path.endswith(os.path.join("air_drumming", "--nQbRBEz2s_000104_000114.mp4"))
    assert recs[2].path.endswith("zzz_000000_000010.mp4")
    with pytest.warns(MissingFilesWarning, match=r"1 of 3 files are missing: .*zzz_000000_000010\.mp4"):
        ds = build_dataset("kinetics", "train", str(tmp_path))
    assert len(ds) == 2 and ds.flip_pairs == () and ds.kind == "kinetics"
    with pytest.raises(FileNotFoundError, match="1 of 3 files are missing"):
        build_dataset("kinetics", "train", str(tmp_path), on_error="raise")
    # classes given explicitly (val must use the train classes)
    recs, _ = parse_kinetics(str(tmp_path / "train.csv"), str(tmp_path / "train"), ["air drumming", "abseiling"])
    assert [r.label for r in recs] == [1, 0, 1]
    (tmp_path / "bad.csv").write_text("youtube_id,label\nx,y\n")
    with pytest.raises(ValueError, match="header"):
        parse_kinetics(str(tmp_path / "bad.csv"), str(tmp_path))


def test_list_files(tmp_path):
    for n in ("a.mp4", "sub dir/b c.mp4"):
        touch(str(tmp_path / n))
    (tmp_path / "two.txt").write_text("a.mp4 3\nsub dir/b c.mp4 0\n\n# comment\n")
    recs, _ = parse_list_file(str(tmp_path / "two.txt"), str(tmp_path))
    assert [(r.path, r.num_frames, r.label) for r in recs] == [
        (str(tmp_path / "a.mp4"), None, 3), (str(tmp_path / "sub dir/b c.mp4"), None, 0)]
    (tmp_path / "three.txt").write_text("a.mp4 120 3\nsub dir/b c.mp4 7 1\n")
    recs, _ = parse_list_file(str(tmp_path / "three.txt"), str(tmp_path))
    assert [(r.num_frames, r.label) for r in recs] == [(120, 3), (7, 1)]
    (tmp_path / "bad.txt").write_text("a.mp4 x\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        parse_list_file(str(tmp_path / "bad.txt"))
    ds = build_dataset("list", "train", str(tmp_path), list_file=str(tmp_path / "three.txt"))
    assert len(ds) == 2 and ds.num_classes == 4


def test_frame_folders(tmp_path):
    d = tmp_path / "frames" / "vid1"
    d.mkdir(parents=True)
    for i in range(1, 8):
        Image.fromarray(np.full((10, 12, 3), i * 20, np.uint8)).save(d / f"img_{i:05d}.jpg")
    (tmp_path / "list.txt").write_text("frames/vid1 7 2\n")
    assert count_frame_files(str(d)) == 7
    ds = build_dataset("list", "train", str(tmp_path), list_file=str(tmp_path / "list.txt"))
    assert ds.records[0].frames_dir and ds.records[0].num_frames == 7 and ds.records[0].label == 2


def test_ssv1(tmp_path):
    (tmp_path / "something-something-v1-labels.csv").write_text(
        "Holding something\nPushing something from left to right\nPushing something from right to left\n")
    (tmp_path / "something-something-v1-train.csv").write_text(
        "5;Pushing something from right to left\n6;Holding something\n")
    for v in ("5", "6"):
        d = tmp_path / "20bn-something-something-v1" / v
        d.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "00001.jpg")
    recs, classes = parse_ssv1(str(tmp_path / "something-something-v1-labels.csv"),
                               str(tmp_path / "something-something-v1-train.csv"), "/f")
    assert [(r.path, r.label, r.frames_dir) for r in recs] == [("/f/5", 2, True), ("/f/6", 0, True)]
    ds = build_dataset("ssv1", "train", str(tmp_path))
    assert ds.frame_template == "{:05d}.jpg" and ds.flip_pairs == ((1, 2),)
    assert left_right_pairs(["Turning the camera left while filming something", "x",
                             "Turning the camera right while filming something"]) == ((0, 2),)


def test_missing_report_lists_first_names(tmp_path):
    lines = [f"v{i}.mp4 0" for i in range(9)]
    (tmp_path / "train.txt").write_text("\n".join(lines))
    touch(str(tmp_path / "v0.mp4"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = build_dataset("list", "train", str(tmp_path))
    msg = str(w[0].message)
    assert "8 of 9 files are missing" in msg and "v1.mp4" in msg and "v5.mp4" in msg and "and 3 more" in msg
    assert "v6.mp4" not in msg and len(ds) == 1 and len(ds.missing) == 8
    os.remove(tmp_path / "v0.mp4")
    with pytest.raises(FileNotFoundError, match="none of its 9 files exist"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_dataset("list", "train", str(tmp_path))


def test_build_dataset_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format"):
        build_dataset("ucf", "train", str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        build_dataset("list", "dev", str(tmp_path))
    with pytest.raises(ValueError, match="on_error"):
        build_dataset("list", "train", str(tmp_path), on_error="ignore")
