"""tdsclip.engine.sampler: ``pad_shards`` evens rank shards by padding (else by cutting); ``drop_last``
drops only a last partial batch, as in torch's DataLoader and tdsclip.data.VideoClipLoader."""
from tdsclip.engine.sampler import batches_of, shard_indices


def test_shards_are_cut_or_padded_to_equal_length():
    cut = [shard_indices(10, 1, 0, r, 3) for r in range(3)]
    assert [len(s) for s in cut] == [3, 3, 3] and len(set(sum(cut, []))) == 9
    padded = [shard_indices(10, 1, 0, r, 3, pad_shards=True) for r in range(3)]
    assert [len(s) for s in padded] == [4, 4, 4] and set(sum(padded, [])) == set(range(10))


def test_drop_last_drops_only_a_partial_last_batch():
    assert batches_of(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5]]
    assert batches_of(list(range(7)), 3, drop_last=False) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches_of(list(range(6)), 3) == [[0, 1, 2], [3, 4, 5]]
