"""End to end: one training step (forward, backward, AdamW step) of TDS-CLIP, fused against reference.
(The data loader's clips/s on each decode path: bench/test_data_loading.py.)

* CPU: a small model (the "tiny" random backbone at 112 px: 7×7 tokens, side width d = 128, T = 8,
  4 clips; --quick: 64 px, d = 64, 2 clips) in float32.
* GPU: ViT-B/16 (random weights), d = 320, 32 clips × 8 frames, bf16 autocast, as in the paper's
  recipe; also the peak allocated memory of the step (torch.cuda.max_memory_allocated).
"""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

import harness

VARIANTS = {"reference": (False, False), "fused": (True, False), "fused+checkpointing": (True, True)}


def step_config(settings):
    from tdsclip.config import TDSCLIPConfig

    if settings.cuda and not settings.quick:
        return TDSCLIPConfig(backbone="ViT-B-16", side_dim=320, num_classes=174, num_frames=8), 32, torch.bfloat16
    if settings.quick:
        return TDSCLIPConfig(backbone="tiny", side_dim=64, num_classes=4, num_frames=8), 2, None
    return TDSCLIPConfig(backbone="tiny", image_size=112, side_dim=128, num_classes=174, num_frames=8), 4, None


@pytest.fixture(scope="module")
def step_model():
    from tdsclip import build_model

    settings = harness.SETTINGS
    config, batch, amp = step_config(settings)
    torch.manual_seed(0)
    with torch.device(settings.device):
        model = build_model(config)
    size = config.resolved_image_size
    clips = torch.randint(0, 256, (batch, config.num_frames, 5, 3, size, size), dtype=torch.uint8,
                          device=settings.device)
    labels = torch.randint(0, config.num_classes, (batch,), device=settings.device)
    return config, model, clips, labels, amp


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_train_step(benchmark, variant, step_model, settings):
    harness.quiet_warnings()
    config, model, clips, labels, amp = step_model
    fused, ckpt = VARIANTS[variant]
    model.set_fused_ops(fused).set_grad_checkpoint(ckpt).train()
    params = model.trainable_parameters()
    # a fresh optimiser per variant: its state (moments) is part of what a step touches
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.15)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(settings.device, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(clips)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
        loss.backward()
        opt.step()

    step()  # warm-up: optimiser state, allocator, kernels
    harness.synchronize(settings)
    extra = {}
    if settings.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        extra["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    benchmark.group = "train step"
    harness.run_timed(benchmark, settings, step, warmup=1, extra_info=dict(
        kind="train_step", variant=variant, backbone=config.backbone, side_dim=config.side_dim,
        frames=config.num_frames, clips=clips.shape[0], image=config.resolved_image_size, device=settings.device,
        amp=str(amp).replace("torch.", "") if amp else None, **extra))
