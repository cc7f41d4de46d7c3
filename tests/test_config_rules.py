"""One set of rules for every config section (tdsclip.config_rules): the model section and the training
sections convert values, reject unknown keys and report YAML errors alike."""
import dataclasses
import typing

import pytest
import yaml

from tdsclip import TDSCLIPConfig
from tdsclip.config_rules import check_known, coerce, coerce_fields, load_yaml, parse_value, split_override
from tdsclip.engine.config import TrainConfig, from_dict, load_config


@pytest.mark.parametrize("text, value", [
    ("8", 8), ("-3", -3), ("0.5", 0.5), ("1e-4", 1e-4), ("2E3", 2000.0), ("true", True), ("False", False),
    ("null", None), ("~", None), ("off", "off"), ("Yes", "Yes"), ("[0.9, 0.999]", [0.9, 0.999]),
    ('"8"', "8"), ("ViT-B-16", "ViT-B-16"), ("", ""), ("a: b: c", "a: b: c"),
])
def test_parse_value(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("value, tp, expected", [
    (True, bool, True), ("yes", bool, True), ("OFF", bool, False), (1, bool, True), ("0", bool, False),
    (8, int, 8), (8.0, int, 8), ("8", int, 8), (" -2 ", int, -2),
    (1, float, 1.0), ("1e-3", float, 1e-3), ("0.5", float, 0.5),
    ("x", str, "x"), (5, str, "5"), (False, str, "off"), (None, str, ""),
    (None, typing.Optional[int], None), ("null", typing.Optional[str], None), ("None", typing.Optional[int], None),
    ("4", typing.Optional[int], 4), ((0.9, 0.99), list, [0.9, 0.99]), ({"a": 1}, dict, {"a": 1}),
])
def test_coerce_accepts(value, tp, expected):
    got = coerce(value, tp, "sec.key")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, tp, message", [
    ("maybe", bool, "sec.key: expected true or false, got 'maybe'"),
    (2, bool, "expected true or false"),
    (2.5, int, "sec.key: expected an integer, got 2.5"),
    ("8.0", int, "expected an integer"),
    (True, int, "expected an integer"),
    ("fast", float, "sec.key: expected a finite number, got 'fast'"),
    ("nan", float, "expected a finite number"),
    (True, float, "expected a finite number"),
    ([1], str, "expected a text value"),
    (None, int, "sec.key: cannot be null"),
    ("x", list, "expected a list"),
    ([1], dict, "expected a mapping"),
])
def test_coerce_rejects_with_the_key_named(value, tp, message):
    with pytest.raises(ValueError) as exc:
        coerce(value, tp, "sec.key")
    assert message in str(exc.value)


def test_unknown_key_suggests_the_nearest():
    check_known("lr", ["lr", "eps"], "optim")
    with pytest.raises(ValueError, match=r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\); "
                                         r"known keys of optim: eps, lr"):
        check_known("lrr", ["lr", "eps"], "optim")
    with pytest.raises(ValueError, match=r"unknown config key 'zzz'; known keys: a$"):
        check_known("zzz", ["a"])


# The same value in a model field and a training field of the same type gives the same result: the
# two layers used to disagree (model.fused_ops=1 was true, runtime.progress=1 a TypeError; a quoted "8"
# was an int for model fields and an error for data.batch_size).
SAME_TYPE_FIELDS = {bool: ("model.fused_ops", "runtime.progress"), int: ("model.num_frames", "data.batch_size"),
                    float: ("model.alpha", "optim.lr")}


@pytest.mark.parametrize("tp, text", [
    (bool, "1"), (bool, "0"), (bool, "yes"), (bool, "off"), (bool, "TRUE"), (int, '"8"'), (int, "8.0"),
    (int, "16"), (float, "1"), (float, '"0.25"'), (float, "3e-1"),
])
def test_model_and_training_sections_convert_alike(tp, text):
    model_key, train_key = SAME_TYPE_FIELDS[tp]
    cfg = load_config("demo", [f"{model_key}={text}", f"{train_key}={text}"])
    a = getattr(cfg.model, model_key.split(".")[1])
    b = getattr(getattr(cfg, train_key.split(".")[0]), train_key.split(".")[1])
    assert a == b and type(a) is type(b) is tp
    direct = TDSCLIPConfig(backbone="tiny", side_dim=64).override([f"{model_key}={text}"])
    assert getattr(direct, model_key.split(".")[1]) == a


@pytest.mark.parametrize("tp, text", [(bool, "2"), (bool, "maybe"), (int, "2.5"), (int, "x"), (float, "fast")])
def test_model_and_training_sections_reject_alike(tp, text):
    messages = []
    for key in SAME_TYPE_FIELDS[tp]:
        with pytest.raises(ValueError) as exc:
            load_config("demo", [f"{key}={text}"])
        messages.append(str(exc.value).replace(key, "KEY"))
    assert messages[0] == messages[1] and "KEY: expected" in messages[0]


def test_coerce_fields_checks_every_key():
    @dataclasses.dataclass
    class Section:
        n: int = 1
        name: str = ""

    assert coerce_fields(Section, {"n": "3", "name": 4}, "sec") == {"n": 3, "name": "4"}
    with pytest.raises(ValueError, match="'sec.nn' \\(did you mean 'sec.n'"):
        coerce_fields(Section, {"nn": 1}, "sec")
    with pytest.raises(ValueError, match="config section 'sec' must be a mapping"):
        coerce_fields(Section, [1], "sec")


def test_split_override():
    assert split_override("optim.lr=5e-4") == (["optim", "lr"], 5e-4)
    assert split_override("a= x=y ") == (["a"], "x=y")
    for bad, message in (("nokey", "key=value"), ("=1", "empty key"), ("a..b=1", "empty key"), (3, "key=value")):
        with pytest.raises(ValueError, match=message):
            split_override(bad)


@pytest.mark.parametrize("text, where", [
    ("name: x\nmodel:\n  side_dim: [64\noptim: {}\n", "line 4"),
    ("name: x\n\tmodel: 1\n", "line 2"),
    ("a: 1\nb: 'unterminated\n", "line"),
])
def test_malformed_yaml_names_file_and_line(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for load in (load_yaml, load_config, TDSCLIPConfig.from_yaml):
        with pytest.raises(ValueError) as exc:
            load(str(path))
        assert str(path) in str(exc.value) and where in str(exc.value) and "not valid YAML" in str(exc.value)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping of keys at the top level, got list"):
        load_config(str(path))
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(str(tmp_path / "empty.yaml")) == {}


def test_train_config_model_is_the_typed_arch_config():
    cfg = load_config("demo", ["model.side_dim=128"])
    assert isinstance(cfg.model, TDSCLIPConfig) and cfg.model.side_dim == 128
    assert cfg.model_config() is cfg.model
    assert isinstance(TrainConfig().model, TDSCLIPConfig)  # the default arch's defaults
    data = cfg.to_dict()
    assert isinstance(data["model"], dict) and data["model"]["side_dim"] == 128 and data["model"]["arch"] == "tdsclip"
    assert from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    with pytest.raises(ValueError, match="model.arch: unknown architecture 'nope'"):
        load_config("demo", ["model.arch=nope"])
    with pytest.raises(ValueError, match="config section 'model' must be a mapping"):
        load_config("demo", ["model=3"])


def test_optional_positive_int_check():
    from tdsclip.config_rules import check_optional_positive_int

    check_optional_positive_int(None, "width")
    check_optional_positive_int(3, "width")
    with pytest.raises(ValueError, match=r"width must be >= 1 \(or null\), got 0"):
        check_optional_positive_int(0, "width")
    for bad in (True, 2.0, "4"):
        with pytest.raises(TypeError, match="width must be an integer"):
            check_optional_positive_int(bad, "width")
