"""DiST's config (round trip, overrides, errors, the shipped demo config) and its frame picking:
which frames the sparse (spatial) and dense (temporal) encoders see."""
import pytest
import torch

from tdsclip.archs import arch_names, model_config_from_dict
from tdsclip.dist.config import DiSTConfig
from tdsclip.dist.frames import frame_differences, split_frames


def test_round_trip_through_dict_yaml_and_registry(tmp_path):
    cfg = DiSTConfig(backbone="tiny", image_size=64, num_frames=6, gamma=3, temporal_dim=24, head="linear",
                     integration_residual="every", logit_scale=50.0)
    again = DiSTConfig.from_dict(cfg.to_dict())
    assert again == cfg
    path = tmp_path / "m.yaml"
    path.write_text(cfg.to_yaml())
    assert DiSTConfig.from_yaml(str(path)) == cfg
    via_registry = model_config_from_dict(cfg.to_dict())
    assert isinstance(via_registry, DiSTConfig) and via_registry == cfg
    assert "dist" in arch_names()


def test_override_coerces_and_leaves_config_unchanged_on_error():
    cfg = DiSTConfig(backbone="tiny")
    cfg.override(["model.gamma=4", "head=linear", "logit_scale=null", "dense_sampling=window"])
    assert (cfg.gamma, cfg.head, cfg.logit_scale) == (4, "linear", None)
    with pytest.raises(ValueError, match="gamma must be 1..5"):
        cfg.override(["gamma=6"])
    assert cfg.gamma == 4
    with pytest.raises(ValueError, match="unknown config key 'model.side_dim'"):
        cfg.override(["side_dim=64"])


@pytest.mark.parametrize("fields, message", [
    ({"arch": "tdsclip"}, "arch: DiSTConfig"),
    ({"dense_sampling": "segments", "num_frames": 7, "gamma": 2}, "multiple of gamma"),
    ({"dense_sampling": "random"}, "dense_sampling must be one of"),
    ({"stem_kernel_t": 4}, "stem_kernel_t must be a positive odd"),
    ({"integration_dim": 100}, "integration_dim must be at most 64"),
    ({"prompt": "a video"}, "exactly one"),
    ({"head": "mlp"}, "head must be one of"),
    ({"integration_residual": "none"}, "integration_residual must be one of"),
    ({"logit_scale": -1.0}, "logit_scale must be > 0"),
    ({"stem_input": "flow"}, "stem_input must be one of"),
    ({"head_init": "zeros"}, "head_init must be one of"),
    ({"stem_input": "differences", "gamma": 1, "num_frames": 1}, "at least 2 dense frames"),
    ({"temporal_dim": 0}, r"temporal_dim must be >= 1 \(or null\)"),
])
def test_bad_values_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        DiSTConfig(backbone="tiny", **fields)


def test_derived_frame_counts():
    assert (DiSTConfig().sparse_frames, DiSTConfig().dense_frames) == (8, 16)
    seg = DiSTConfig(num_frames=16, dense_sampling="segments")
    assert (seg.sparse_frames, seg.dense_frames) == (8, 16)
    assert DiSTConfig(backbone="tiny").widths(768) == (96, 384)  # β = 1/8, α = 1/2 of C


def test_demo_dist_config_loads_without_tdsclip_keys():
    from tdsclip.engine.config import load_config

    cfg = load_config("demo_dist")
    mcfg = cfg.model_config()
    assert isinstance(mcfg, DiSTConfig)
    assert cfg.model.arch == "dist" and not hasattr(cfg.model, "side_dim")  # base demo's TDS-CLIP keys dropped
    assert cfg.data.dataset == "demo" and cfg.runtime.output == "runs/demo_dist"
    assert mcfg.stem_input == "differences"  # the recipe that learns the demo (docs/dist.md "Demo")
    assert mcfg.head_init == "fan_in" and DiSTConfig().head_init == "authors"  # the paper's init stays the default


# --------------------------------------------------------------------------------------------- frames

def labelled_clips(B=2, S=4):
    """Pixel value = 10·segment + window index (+ 100 for the second clip): frames are identifiable."""
    clips = torch.zeros(B, S, 5, 3, 2, 2, dtype=torch.uint8)
    for b in range(B):
        for s in range(S):
            for w in range(5):
                clips[b, s, w] = 100 * b + 10 * s + w
    return clips


def ids(frames):  # (B, n, 3, H, W) -> (B, n) frame ids
    return frames[:, :, 0, 0, 0].tolist()


@pytest.mark.parametrize("gamma, offsets", [(1, [0]), (2, [0, 1]), (3, [-1, 0, 1]), (4, [-1, 0, 1, 2]),
                                            (5, [-2, -1, 0, 1, 2])])
def test_window_sampling_takes_gamma_frames_of_each_segment_window(gamma, offsets):
    sparse, dense = split_frames(labelled_clips(), gamma, "window")
    assert ids(sparse) == [[100 * b + 10 * s + 2 for s in range(4)] for b in range(2)]
    assert ids(dense) == [[100 * b + 10 * s + 2 + o for s in range(4) for o in offsets] for b in range(2)]
    # each sparse frame is one of the γ dense frames of its group (Ψ's kernel = stride = γ)
    for t in range(4):
        assert ids(sparse)[0][t] in ids(dense)[0][gamma * t:gamma * (t + 1)]


@pytest.mark.parametrize("gamma", [1, 2, 4])
def test_segment_sampling_uses_every_centre_dense_and_every_gammath_sparse(gamma):
    sparse, dense = split_frames(labelled_clips(S=8), gamma, "segments")
    assert ids(dense) == [[100 * b + 10 * s + 2 for s in range(8)] for b in range(2)]
    assert ids(sparse) == [[100 * b + 10 * s + 2 for s in range(0, 8, gamma)] for b in range(2)]


def test_frame_differences_are_consecutive_differences_with_the_last_repeated():
    dense = torch.tensor([0.0, 1.0, 3.0, 7.0]).view(1, 4, 1, 1, 1)
    assert frame_differences(dense).flatten().tolist() == [1.0, 2.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="at least 2 dense frames"):
        frame_differences(dense[:, :1])


def test_segment_sampling_rejects_a_count_that_gamma_does_not_divide():
    with pytest.raises(ValueError, match="multiple of gamma=2"):
        split_frames(labelled_clips(S=3), 2, "segments")
