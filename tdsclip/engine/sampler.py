"""Deterministic, resumable, rank-sharded sample order.

The order of epoch ``e`` is a permutation drawn from a generator seeded by ``(seed, e)`` alone, so
it does not depend on how many steps ran before (a resumed run sees the same batches as an
uninterrupted one) nor on global RNG state. Each rank takes every ``world``-th element; the list is
first cut (the default) or, with ``pad_shards``, padded by wrapping around, to a multiple of
``world``, so all ranks run the same number of steps (DDP needs that). ``drop_last`` means what it
means in ``torch.utils.data.DataLoader`` and ``tdsclip.data.VideoClipLoader``: drop the last batch
when it is not full.
"""
from __future__ import annotations

import torch


def epoch_seed(seed: int, epoch: int) -> int:
    # Distinct, well-spread seeds per epoch; stays in int64.
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    if not shuffle:
        return list(range(n))
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g).tolist()


def shard_indices(n: int, seed: int, epoch: int, rank: int, world: int, *, shuffle: bool = True,
                  pad_shards: bool = False) -> list[int]:
    """This rank's sample indices for ``epoch``, in order: equal-length shards, cut to
    ``n // world`` each, or (``pad_shards``) padded to ``ceil(n / world)`` by wrapping around."""
    if n <= 0:
        raise ValueError("the data set is empty")
    order = epoch_order(n, seed, epoch, shuffle)
    if pad_shards:
        order = order + order[:(-n) % world]
    else:
        order = order[: (n // world) * world]
    return order[rank::world]


def batches_of(indices: list[int], batch_size: int, drop_last: bool = True) -> list[list[int]]:
    """Consecutive batches of ``indices``; ``drop_last`` drops a last batch that is not full."""
    out = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    if drop_last and out and len(out[-1]) < batch_size:
        out.pop()
    return out
