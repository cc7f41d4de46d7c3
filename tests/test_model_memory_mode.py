"""memory_mode (issue #11): "lean" and "fast" give the plain model's gradients; "fast" keeps the side MLP's
hidden tensor (more activation bytes, no GEMM recomputed); bad values are rejected with the field's name."""
import pytest
import torch
import torch.nn.functional as F

from tdsclip.config import TDSCLIPConfig
from tdsclip import build_model
from tdsclip.model.summary import activation_bytes


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model(TDSCLIPConfig(backbone="tiny", side_dim=64, num_classes=4, num_frames=4)).train()
    clips = torch.randint(0, 256, (2, 4, 5, 3, 64, 64), dtype=torch.uint8)
    return model, clips, torch.tensor([0, 3])


def _grads(model, clips, labels, fused, mode):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.zero_grad(set_to_none=True)
    model.set_fused_ops(fused).set_memory_mode(mode)
    F.cross_entropy(model(clips), labels).backward()
    model.load_state_dict(state)  # BN running statistics back
    return torch.cat([p.grad.flatten() for p in model.trainable_parameters()])


@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_memory_modes_match_plain_gradients(tiny, mode):
    model, clips, labels = tiny
    ref = _grads(model, clips, labels, False, "lean")
    got = _grads(model, clips, labels, True, mode)
    assert model.memory_mode == mode and model.config.memory_mode == mode
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_fast_keeps_the_hidden_tensor(tiny):
    model, clips, _ = tiny
    model.set_fused_ops(True)
    lean = activation_bytes(model.set_memory_mode("lean"), clips)
    fast = activation_bytes(model.set_memory_mode("fast"), clips)
    plain = activation_bytes(model.set_fused_ops(False), clips)
    assert lean < fast < plain


def test_bad_memory_mode_is_rejected(tiny):
    with pytest.raises(ValueError, match="memory_mode"):
        TDSCLIPConfig(memory_mode="tiny")
    with pytest.raises(ValueError, match="memory_mode"):
        tiny[0].set_memory_mode("small")
    assert tiny[0].memory_mode in ("lean", "fast")
