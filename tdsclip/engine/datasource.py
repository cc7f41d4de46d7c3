"""What the training loop needs from the data, and an in-memory implementation.

The loop talks to a *data source* with this interface (duck-typed):

* ``num_classes`` (int) and ``class_names`` (list of str);
* ``num_train_batches()`` → batches per epoch on this rank (the same on every rank);
* ``train_batches(epoch, start_batch)`` → an iterable of ``(clips, labels)`` for ``epoch``, starting
  at batch ``start_batch`` of that epoch (resume mid-epoch) — the same batches for the same
  ``(seed, epoch)`` every time;
* ``val_batches()`` → ``(clips, labels)`` of this rank's share of the validation set (each video once
  over all ranks);
* optionally ``eval_batches(views)`` → ``(clips, labels, video_ids)`` where clips may carry a view
  axis, for ``tdsclip eval``.

``clips`` are uint8 ``(B, T, 5, 3, H, W)`` (or float), ``labels`` int64 ``(B,)``.
:class:`TensorDataSource` serves tensors held in memory (tests, small experiments, the linear probe);
:mod:`tdsclip.engine.video_source` adapts the ``tdsclip.data`` video pipeline.
"""
from __future__ import annotations

import torch

from .sampler import batches_of, shard_indices


class TensorDataSource:
    def __init__(self, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
                 batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1, class_names=None,
                 num_classes: int | None = None, transform=None):
        self.train_x, self.train_y = train
        self.val = val
        self.batch_size = batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self.num_classes = num_classes or int(max(int(self.train_y.max()), int(val[1].max()) if val else 0) + 1)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        # transform(x, generator) → x: a stand-in for augmentation, seeded per (epoch, batch) so it too
        # is reproducible after a resume.
        self.transform = transform

    def num_train_batches(self) -> int:
        n = len(shard_indices(len(self.train_y), self.seed, 0, self.rank, self.world))
        return n // self.batch_size

    def train_batches(self, epoch: int, start_batch: int = 0):
        idx = shard_indices(len(self.train_y), self.seed, epoch, self.rank, self.world)
        for b, batch in enumerate(batches_of(idx, self.batch_size)):
            if b < start_batch:
                continue
            x = self.train_x[batch]
            if self.transform is not None:
                g = torch.Generator().manual_seed(hash((self.seed, epoch, b, self.rank)) % (2**62))
                x = self.transform(x, g)
            yield x, self.train_y[batch]

    def val_batches(self):
        if self.val is None:
            return
        x, y = self.val
        idx = list(range(len(y)))[self.rank::self.world]  # no padding: each video counted once
        for batch in batches_of(idx, self.batch_size, drop_last=False):
            yield x[batch], y[batch]

    def eval_batches(self, views: str = "single"):
        x, y = self.val
        idx = list(range(len(y)))[self.rank::self.world]
        for batch in batches_of(idx, self.batch_size, drop_last=False):
            yield x[batch], y[batch], torch.tensor(batch)
