"""Index rules of docs/model.md §6 against hand-computed cases (tdsclip.data.sampling)."""
import numpy as np
import pytest

from tdsclip.data.sampling import clip_frame_indices, sample_indices, test_views, window_indices


def test_val_rounds_half_to_even():
    # n=11, T=4: seg = 2.5; round(2.5) = 2 and round(7.5) = 8 (half to even), int(seg/2) = 1.
    # Half-up rounding would give [1, 4, 6, 9].
    assert sample_indices(11, 4, "val").tolist() == [1, 3, 6, 9]


def test_val_short_and_exact_videos():
    # n=8, T=8: seg = 0.875 -> round: 0, 1, 2, 3, 4 (3.5 -> 4), 4 (4.375), 5, 6; int(0.4375) = 0
    assert sample_indices(8, 8, "val").tolist() == [0, 1, 2, 3, 4, 4, 5, 6]
    # n=33, T=8: seg = 4 -> 4t + 2
    assert sample_indices(33, 8, "val").tolist() == [2, 6, 10, 14, 18, 22, 26, 30]


def test_video_shorter_than_T():
    # n=3, T=8: seg = 0.25 -> round(0.25 t) = 0, 0, 0 (0.5 -> 0), 1, 1, 1, 2 (1.5 -> 2), 2
    assert sample_indices(3, 8, "val").tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert sample_indices(1, 8, "val").tolist() == [0] * 8
    assert sample_indices(1, 8, "test", clip_idx=1, num_clips=2).tolist() == [0] * 8


def test_test_clips():
    # n=33, T=8, K=2: seg = 4; offsets int(4/3) = 1 and int(8/3) = 2
    assert sample_indices(33, 8, "test", clip_idx=0, num_clips=2).tolist() == [1, 5, 9, 13, 17, 21, 25, 29]
    assert sample_indices(33, 8, "test", clip_idx=1, num_clips=2).tolist() == [2, 6, 10, 14, 18, 22, 26, 30]
    # n=17, T=4, K=4: seg = 4; offsets int(0.8)=0, int(1.6)=1, int(2.4)=2, int(3.2)=3
    got = [sample_indices(17, 4, "test", clip_idx=k, num_clips=4).tolist() for k in range(4)]
    assert got == [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]
    # K = 1 is the val rule
    for n in (1, 2, 7, 11, 50):
        assert sample_indices(n, 8, "test", num_clips=1).tolist() == sample_indices(n, 8, "val").tolist()


def test_train_one_random_frame_per_segment():
    # n=11, T=4: segments [round(2.5t), round(2.5(t+1))] = [0,2], [2,5], [5,8], [8,10], both ends inclusive
    lo, hi = np.array([0, 2, 5, 8]), np.array([2, 5, 8, 10])
    rng = np.random.default_rng(0)
    draws = np.stack([sample_indices(11, 4, "train", rng=rng) for _ in range(400)])
    assert ((draws >= lo) & (draws <= hi)).all()
    assert (draws.min(0) == lo).all() and (draws.max(0) == hi).all()  # both ends are reachable
    # n=3, T=8: [0,0] [0,0] [0,1] [1,1] [1,1] [1,2] [2,2] [2,2]
    lo, hi = np.array([0, 0, 0, 1, 1, 1, 2, 2]), np.array([0, 0, 1, 1, 1, 2, 2, 2])
    draws = np.stack([sample_indices(3, 8, "train", rng=rng) for _ in range(200)])
    assert ((draws >= lo) & (draws <= hi)).all() and (draws.max(0) == hi).all()
    assert (draws <= 2).all()


def test_train_is_seeded():
    a = sample_indices(100, 8, "train", rng=np.random.default_rng(5))
    b = sample_indices(100, 8, "train", rng=np.random.default_rng(5))
    c = sample_indices(100, 8, "train", rng=np.random.default_rng(6))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_window_clamps_at_both_ends_never_wraps():
    w = window_indices([0, 5, 10], 11)
    assert w.tolist() == [[0, 0, 0, 1, 2], [3, 4, 5, 6, 7], [8, 9, 10, 10, 10]]
    assert window_indices([1], 4).tolist() == [[0, 0, 1, 2, 3]]
    assert window_indices([0, 0], 1).tolist() == [[0] * 5, [0] * 5]
    assert window_indices([2], 3, window=3).tolist() == [[1, 2, 2]]


def test_clip_frame_indices_is_windows_of_centres():
    f = clip_frame_indices(11, 4, "val")
    assert f.shape == (20,)
    assert f.reshape(4, 5).tolist() == window_indices([1, 3, 6, 9], 11).tolist()
    f = clip_frame_indices(2, 8, "test", clip_idx=1, num_clips=2)
    assert f.min() == 0 and f.max() == 1 and f.shape == (40,)


def test_views_order():
    assert test_views(2, 3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


@pytest.mark.parametrize("args, kwargs, err", [
    ((0, 8, "val"), {}, ValueError),
    ((-3, 8, "val"), {}, ValueError),
    ((10, 0, "val"), {}, ValueError),
    ((10, 8, "middle"), {}, ValueError),
    ((10, 8, "train"), {}, ValueError),  # no rng
    ((10, 8, "test"), {"clip_idx": 2, "num_clips": 2}, ValueError),
    ((10, 8, "test"), {"num_clips": 0}, ValueError),
    ((10.0, 8, "val"), {}, TypeError),
])
def test_bad_arguments(args, kwargs, err):
    with pytest.raises(err):
        sample_indices(*args, **kwargs)


def test_window_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        window_indices([1], 5, window=4)
    with pytest.raises(ValueError, match="num_frames"):
        window_indices([0], 0)


def test_train_segment_rule_draws_inside_tsn_segments():
    # published Something-Something loader: n=11, T=4 -> [floor(11t/4), floor(11(t+1)/4) - 1] = [0,1] [2,4] [5,7] [8,10]
    lo, hi = np.array([0, 2, 5, 8]), np.array([1, 4, 7, 10])
    rng = np.random.default_rng(0)
    draws = np.stack([sample_indices(11, 4, "train", rng=rng, train_rule="segment") for _ in range(400)])
    assert ((draws >= lo) & (draws <= hi)).all()
    assert (draws.min(0) == lo).all() and (draws.max(0) == hi).all()
    # the Kinetics rule reaches frame 2 in segment 0 (inclusive round((n-1)/T*(t+1)) end); the segment rule never does
    kin = np.stack([sample_indices(11, 4, "train", rng=rng) for _ in range(400)])
    assert kin[:, 0].max() == 2 and draws[:, 0].max() == 1
    # n=9, T=8: [0,0] [1,1] [2,2] [3,3] [4,4] [5,5] [6,6] [7,8]
    draws = np.stack([sample_indices(9, 8, "train", rng=rng, train_rule="segment") for _ in range(200)])
    assert (draws[:, :7] == np.arange(7)).all() and set(draws[:, 7].tolist()) == {7, 8}


def test_train_segment_rule_short_videos_all_frames_plus_sorted_repeats():
    rng = np.random.default_rng(1)
    for n in (1, 3, 8):
        for _ in range(50):
            idx = sample_indices(n, 8, "train", rng=rng, train_rule="segment")
            assert idx.shape == (8,) and (np.diff(idx) >= 0).all()
            assert set(idx.tolist()) == set(range(n))  # every frame appears
    assert sample_indices(8, 8, "train", rng=rng, train_rule="segment").tolist() == list(range(8))


def test_train_rule_per_dataset_kind_and_bad_rule():
    from tdsclip.data.sampling import train_rule_for

    assert train_rule_for("ssv2") == "segment" and train_rule_for("ssv1") == "segment"
    assert train_rule_for("kinetics") == "kinetics" and train_rule_for("list") == "kinetics"
    with pytest.raises(ValueError, match="train_rule"):
        sample_indices(11, 4, "train", rng=np.random.default_rng(0), train_rule="tsn")
    f = clip_frame_indices(11, 4, "train", rng=np.random.default_rng(3), train_rule="segment").reshape(4, 5)
    assert f.tolist() == window_indices(
        sample_indices(11, 4, "train", rng=np.random.default_rng(3), train_rule="segment"), 11).tolist()


def test_loader_uses_the_rule_of_its_dataset_kind():
    from tdsclip.data.dataset import VideoDataset
    from tdsclip.data.loader import VideoClipLoader

    for kind, rule in (("ssv2", "segment"), ("kinetics", "kinetics")):
        loader = VideoClipLoader(VideoDataset(records=[], kind=kind), batch_size=2, num_frames=4, split="train",
                                 image_size=64, backend="pyav")
        assert loader.spec.train_rule == rule
