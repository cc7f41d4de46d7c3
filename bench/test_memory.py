"""Activation memory: bytes autograd keeps for backward (saved_tensors_hooks, each storage once,
parameters excluded).

* per op, at the ViT-B/16 shape (B = 8 clips × T = 8): eager reference against each fused backend;
* per training step of the side network: the TDS-CLIP model (ViT-B/16 backbone with random weights,
  d = 320, one clip of T = 8; the "tiny" backbone with --quick) for the reference model, the fused
  model and the fused model with gradient checkpointing, measured by tdsclip.model.summary (which also
  counts the inputs that checkpointing holds). The frozen backbone keeps nothing (no_grad).

The timed part is the recorded forward; the numbers that matter are in extra_info.
"""
from __future__ import annotations

import pytest
import torch

import harness

VARIANTS = {"reference": (False, False), "fused": (True, False), "fused+checkpointing": (True, True)}


def _op_memory_cases():
    settings = harness.SETTINGS
    shape = harness.model_shapes(settings.quick)[0]  # B/16, B = 8, T = 8 (or the quick shape)
    return [(op, shape, impl) for op in harness.op_benches() for impl in ["eager"] + harness.fused_backends(
        op.name, settings.device)]


@pytest.mark.parametrize("case", _op_memory_cases(), ids=lambda c: f"{c[0].name}-{c[2]}")
def test_op_saved_bytes(benchmark, case, settings):
    harness.quiet_warnings()
    op, shape, impl = case
    state = op.build(shape, settings)
    result = {}

    def forward():
        state.zero_grad()
        with harness.SavedTensors(exclude=state.params) as rec:
            out = op.call(state, impl)
        result["bytes"] = rec.bytes
        result["tensors"] = len(rec.seen)
        del out

    op.call(state, impl)  # warm-up (lazy initialisation, Triton compilation)
    benchmark.group = f"saved bytes | {op.name}"
    harness.run_timed(benchmark, settings, forward, warmup=1, extra_info=dict(
        kind="op_memory", op=op.name, impl=impl, shape=shape.info(), device=settings.device,
        dtype=str(settings.dtype).replace("torch.", "")))
    benchmark.extra_info.update(saved_bytes=result["bytes"], saved_tensors=result["tensors"])


def side_network_config(quick: bool):
    from tdsclip.config import TDSCLIPConfig

    if quick:
        return TDSCLIPConfig(backbone="tiny", side_dim=64, num_classes=4, num_frames=8)
    return TDSCLIPConfig(backbone="ViT-B-16", side_dim=320, num_classes=174, num_frames=8)


@pytest.fixture(scope="module")
def side_model():
    from tdsclip import build_model

    settings = harness.SETTINGS
    config = side_network_config(settings.quick)
    with torch.device(settings.device):
        model = build_model(config)
    size = config.resolved_image_size
    clips = torch.randint(0, 256, (1, config.num_frames, 5, 3, size, size), dtype=torch.uint8,
                          device=settings.device)
    return config, model, clips


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_side_network_saved_bytes(benchmark, variant, side_model, settings):
    from tdsclip.model.summary import activation_bytes

    harness.quiet_warnings()
    config, model, clips = side_model
    fused, ckpt = VARIANTS[variant]
    model.set_fused_ops(fused).set_grad_checkpoint(ckpt)
    result = {}

    def forward():
        result["bytes"] = activation_bytes(model, clips)

    benchmark.group = "saved bytes | side network training step"
    harness.run_timed(benchmark, settings, forward, warmup=1, extra_info=dict(
        kind="model_memory", variant=variant, backbone=config.backbone, side_dim=config.side_dim,
        frames=config.num_frames, clips=clips.shape[0], image=config.resolved_image_size, device=settings.device))
    benchmark.extra_info["saved_bytes_per_clip"] = result["bytes"] / clips.shape[0]
