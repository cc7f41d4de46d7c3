"""DiST's cost summary (tdsclip.dist.summary) on the shared counting of tdsclip.model.summary:
parameters per part, FLOPs per part by hand, activation bytes with and without checkpointing."""
import pytest

from tdsclip.dist import DiSTConfig
from tdsclip.dist import summary


def tiny(**kw):
    base = dict(backbone="tiny", image_size=64, num_frames=4, gamma=2, temporal_dim=16, integration_dim=64,
                pooling_layers=1, head="linear", num_classes=3)
    base.update(kw)
    return DiSTConfig(**base)


def test_parameter_parts_add_up_to_the_trainable_total():
    counts = summary.parameter_counts(summary.meta_model(tiny()))
    parts = ["temporal stem (3-D conv)", "T-Blocks", "FC(X_l) inputs", "Psi (temporal conv + cls)", "Phi (Linear)",
             "I-Block FFNs", "head (pooling + projection)"]
    assert sum(counts[p] for p in parts) == counts["trainable total"]
    assert counts["frozen text tower"] == 0 and counts["frozen vision tower"] > 0


@pytest.mark.parametrize("gamma", [2, 4])
def test_stem_flops_by_hand_and_parts_within_the_total(gamma):
    cfg = tiny(gamma=gamma)
    flops = summary.flops_per_view(cfg)
    # 3-D stem: every dense frame x 16 patches, a (3·5·16·16 → βC) product, multiply-add = 2
    assert flops["temporal stem"] == pytest.approx(2 * (4 * gamma) * 16 * (3 * 5 * 16 * 16) * 16, rel=1e-6)
    parts = sum(v for k, v in flops.items() if k != "total")
    assert 0 < parts <= flops["total"]
    assert flops["total"] - parts == pytest.approx(2 * 64 * 3, rel=1e-6)  # only the linear classifier is outside


def test_activation_bytes_checkpointing_keeps_less():
    act = summary.activation_bytes_per_clip(tiny(), "cpu")
    assert list(act) == ["plain", "checkpointing"]
    assert act["plain"] > act["checkpointing"] > 0


def test_main_prints_the_summary(capsys):
    assert summary.main(["backbone=tiny", "image_size=64", "num_frames=4", "head=linear", "num_classes=3",
                         "integration_dim=64", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "trainable total" in out and "GMACs" in out
    assert summary.main(["gamma=0"]) == 2
