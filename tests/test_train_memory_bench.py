"""bench/train_memory.py (training memory of every architecture, run on a GPU by scripts/gpu_check.sh):
its tiny form runs every (architecture, variant) row on the CPU."""
from __future__ import annotations

import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import train_memory  # noqa: E402
from tdsclip.archs import arch_names  # noqa: E402


def test_every_architecture_and_variant_runs_one_training_step(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert train_memory.main(["--tiny", "--batch", "1", "--device", "cpu", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    expected = {(label, v) for label, _, _, variants in train_memory.TINY_CASES for v in variants}
    assert {(r["arch"], r["variant"]) for r in rows} == expected
    assert {r["model"] for r in rows} == set(arch_names())  # every registered architecture has a row
    assert all(math.isfinite(r["loss"]) and r["step_s"] > 0 for r in rows)
    assert all("peak_bytes" not in r and "paper_GB" not in r for r in rows)  # GPU-only; tiny is no paper shape
    table = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in table.splitlines()) == len(rows) + 1  # header + rows
    assert "– (GPU only)" in table


def test_full_cases_name_valid_model_configs_of_every_architecture():
    archs = set()
    for label, source, overrides, variants in train_memory.FULL_CASES:
        config = train_memory.model_config(source, overrides, train_memory.CLASSES)
        assert config.num_classes == train_memory.CLASSES and config.pretrained is None, label
        assert set(variants) <= set(train_memory.VARIANTS)
        archs.add(config.arch)
    assert archs == set(arch_names())


@pytest.mark.parametrize("argv, message", [(["--archs", "Nope", "--tiny"], "--archs"),
                                           (["--batch", "0"], "--batch"),
                                           (["--device", "cuda"], "no CUDA device")])
def test_bad_arguments_are_exit_2(argv, message, capsys):
    if argv == ["--device", "cuda"] and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit) as e:
        train_memory.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
