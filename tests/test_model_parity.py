"""The fused model (``fused_ops=True``: tds_kernels' automatic backend + the memory-lean layers) against
the plain PyTorch model (``fused_ops=False``) with the same weights: logits and every trainable
gradient, train and eval mode, with and without checkpointing, fp32 and bf16 autocast; plus a short
optimisation run.

Rule (tests/parity.py): |fused - fp64| <= 2 x |plain - fp64| + atol·max(1, max|fp64|), where fp64 is
the plain model run in float64. atol: fp32 1e-5. bf16 autocast: atol 3e-2 (documented: bf16 keeps 8
mantissa bits, and the fused and plain paths round at different points — e.g. the lean side
connection rounds the normalised input once, plain autocast rounds LayerNorm's output — so they
need not be within 2x of each other elementwise; 3e-2 of the largest magnitude is ~4 bf16 ulps).

While a fused backend is not built, "fused" resolves to the reference for that op (with a warning):
the comparison still runs the lean layers, and becomes a full kernel parity test when they land.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from parity import assert_parity
from tdsclip import build_model
from test_model_utils import make_clips, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")

BF16_ATOL = 3e-2


def _randomise_norms(model):
    """Non-trivial BN / LN affine parameters and running statistics, so that every term matters."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.side.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _models(**overrides):
    torch.manual_seed(0)
    ref = build_model(tiny_config(fused_ops=False, **overrides))
    _randomise_norms(ref)
    fused = copy.deepcopy(ref).set_fused_ops(True)
    ref64 = copy.deepcopy(ref).double()
    return ref, fused, ref64


def _forward_backward(model, clips, train, weights, autocast=None):
    model.train(train)
    model.zero_grad(set_to_none=True)
    if autocast is None:
        logits = model(clips)
    else:
        with torch.autocast("cpu", dtype=autocast):
            logits = model(clips)
    (logits.to(weights.dtype) * weights).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return logits, grads


def _check(ref, fused, ref64, clips, train, autocast=None, atol=None, dtype=None):
    w = torch.randn(clips.shape[0], ref.config.num_classes, generator=torch.Generator().manual_seed(5))
    lf, gf = _forward_backward(fused, clips, train, w, autocast)
    lr, gr = _forward_backward(ref, clips, train, w, autocast)
    l64, g64 = _forward_backward(ref64, clips, train, w.double())
    worst = {"logits": assert_parity(lf, lr, l64, "logits", atol=atol, dtype=dtype)}
    assert set(gf) == set(gr) == set(g64)
    for name in g64:
        assert gf[name] is not None and gr[name] is not None, f"{name} got no gradient"
        worst[name] = assert_parity(gf[name], gr[name], g64[name], f"grad {name}", atol=atol, dtype=dtype)
    return worst


@pytest.mark.parametrize("train, ckpt", [(True, False), (False, False), (True, True)],
                         ids=["train", "eval", "train-checkpointed"])
def test_fused_model_matches_reference_fp32(train, ckpt):
    ref, fused, ref64 = _models(grad_checkpoint=ckpt)
    errors = _check(ref, fused, ref64, make_clips(2, 3), train)
    assert errors["logits"] < 1e-3


@pytest.mark.parametrize("T, batch", [(1, 1), (2, 3)])
def test_fused_model_matches_reference_small_shapes(T, batch):
    ref, fused, ref64 = _models(num_frames=T, td_variant="plain", stem_padding="aligned", pool_kernel=5)
    _check(ref, fused, ref64, make_clips(batch, T, dtype=torch.float32), train=True)


def test_fused_model_matches_reference_bf16_autocast():
    ref, fused, ref64 = _models(grad_checkpoint=True)
    _check(ref, fused, ref64, make_clips(2, 3), train=True, autocast=torch.bfloat16, atol=BF16_ATOL,
           dtype=torch.bfloat16)


def test_checkpointing_changes_neither_results_nor_bn_statistics():
    for fused_ops in (False, True):
        torch.manual_seed(0)
        a = build_model(tiny_config(fused_ops=fused_ops))
        b = copy.deepcopy(a).set_grad_checkpoint(True)
        clips = make_clips(2, 3)
        w = torch.randn(2, 5)
        la, ga = _forward_backward(a, clips, True, w)
        lb, gb = _forward_backward(b, clips, True, w)
        torch.testing.assert_close(lb, la, rtol=0, atol=0)
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-6, atol=1e-7, msg=name)
        for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
            torch.testing.assert_close(y, x, rtol=0, atol=0, msg=f"buffer {name} after checkpointed backward")


def test_fused_and_reference_share_state_dict_keys():
    ref = build_model(tiny_config(fused_ops=False))
    fused = build_model(tiny_config(fused_ops=True))
    assert list(ref.state_dict()) == list(fused.state_dict())
    fused.load_state_dict(ref.state_dict())  # strict
    clips = make_clips(2, 3)
    ref.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(clips), ref(clips), rtol=1e-4, atol=1e-4)


def _train(model, clips, labels, steps):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.15)
    model.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(clips), labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_optimisation_reduces_the_loss_identically():
    torch.manual_seed(0)
    ref = build_model(tiny_config(fused_ops=False))
    fused = copy.deepcopy(ref).set_fused_ops(True).set_grad_checkpoint(True)
    clips, labels = make_clips(4, 2, seed=7), torch.tensor([0, 1, 2, 3])
    lr = _train(ref, clips, labels, 5)
    lf = _train(fused, clips, labels, 5)
    assert lr[-1] < 0.8 * lr[0], lr
    torch.testing.assert_close(torch.tensor(lf), torch.tensor(lr), rtol=2e-3, atol=2e-3)
