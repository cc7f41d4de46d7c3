"""torch.export of the eval model with the tds custom ops (CPU backends here): the exported program
computes what eager does, saved and reloaded, at another batch size."""
import pytest
import torch

import tdsclip
from tdsclip.export import export_model, main as export_main
from test_model_utils import make_clips, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")


def test_exported_program_matches_eager_and_keeps_the_custom_ops(tmp_path):
    model = tdsclip.build_model(tiny_config())
    model.train()
    with torch.no_grad():
        model(make_clips(2, 3))  # non-trivial running statistics
    model.eval().save_pretrained(str(tmp_path / "m"))
    assert export_main([str(tmp_path / "m.pt2"), "--model", str(tmp_path / "m")]) == 0
    program = torch.export.load(str(tmp_path / "m.pt2"))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"tds.sme_stem_forward.default", "tds.td_adapter_forward.default", "tds.cls_token_shift_forward.default"} <= ops
    for batch in (1, 3):  # the batch dimension is dynamic
        clips = make_clips(batch, 3, seed=batch)
        with torch.no_grad():
            eager = model(clips)
            exported = program.module()(clips)
        # same ops in the same order; measured max difference 3e-8 (attention is decomposed by export)
        torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-6)


def test_static_batch_export_of_the_reference_model():
    model = tdsclip.build_model(tiny_config(fused_ops=False)).eval()
    clips = make_clips(2, 3)
    program = export_model(model, clips, dynamic_batch=False)
    assert not any(str(n.target).startswith("tds.") for n in program.graph.nodes if n.op == "call_function")
    with torch.no_grad():
        torch.testing.assert_close(program.module()(clips), model(clips), rtol=1e-5, atol=1e-6)
