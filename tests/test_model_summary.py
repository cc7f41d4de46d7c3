"""Parameter counts (docs/model.md §3: ViT-B/16, d = 320, 174 classes ≈ 24.2 M trainable), FLOPs and
activation-memory accounting of tdsclip.model.summary."""
import pytest
import torch

from tdsclip import TDSCLIPConfig
from tdsclip.model import summary
from test_model_utils import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:tds_kernels.*:RuntimeWarning")


def test_b16_parameter_count_matches_spec():
    model = summary._meta_model(TDSCLIPConfig(backbone="ViT-B-16", side_dim=320, num_classes=174), fused_ops=True)
    counts = summary.parameter_counts(model)
    assert counts["trainable total"] == pytest.approx(24.2e6, rel=0.01)
    assert counts["stem: motion conv + BN"] == pytest.approx(2.95e6, rel=0.01)
    assert counts["TD-Adapters"] == pytest.approx(0.16e6, rel=0.02)
    assert len(model.side.blocks) == 12
    assert counts["frozen backbone"] == pytest.approx(85.8e6, rel=0.01)  # ViT-B/16 without ln_post / proj
    assert "other trainable" not in counts
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == counts["trainable total"]


def test_flops_per_view_of_the_tiny_model_by_hand():
    cfg = tiny_config(num_frames=2)
    parts = summary.flops_per_view(cfg, 2)
    # backbone: 2 frames x [patch embedding 16 tokens x (3·16·16 -> 64) + 3 blocks of ViT matmuls]
    T, L, N, C = 2, 3, 17, 64
    embed = 2 * 16 * 768 * 64
    block = 2 * N * C * (3 * C) + 2 * N * N * C * 2 + 2 * N * C * C + 2 * N * C * 4 * C * 2
    assert parts["backbone (frozen)"] == pytest.approx(T * (embed + L * block), rel=1e-6)
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"), rel=1e-6)
    assert summary.flops_per_view(cfg, 4)["side blocks"] == pytest.approx(2 * parts["side blocks"], rel=1e-6)


def test_activation_bytes_fused_and_checkpointed_keep_less():
    act = summary.activation_bytes_per_clip(tiny_config(num_frames=2), "cpu", batch=2)
    assert act["reference"] > act["fused"] > act["fused + checkpointing"] > 0


def test_main_prints_the_summary(capsys):
    assert summary.main(["backbone=tiny", "side_dim=64", "num_classes=3", "num_frames=2", "--frames", "2", "4"]) == 0
    out = capsys.readouterr().out
    for needle in ("trainable total", "frozen backbone", "T=2:", "T=4:", "fused + checkpointing"):
        assert needle in out
    assert summary.main(["side_dim=100", "--no-memory"]) == 2
    assert "side_dim must be a positive multiple of 64" in capsys.readouterr().err
