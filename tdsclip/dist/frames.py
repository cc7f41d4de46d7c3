"""Which frames of a clip DiST's two encoders see (docs/dist.md "Dense frames").

Clips arrive from the shared loader as ``(B, S, 5, 3, H, W)``: S segments, each the 5-frame window
of consecutive native frames around the segment centre (index 2). DiST needs T sparse frames for
the frozen spatial encoder and γT dense frames for the temporal encoder, with dense frame
``γt + j`` (j < γ) belonging to sparse frame t (Ψ groups them with kernel = stride = γ):

* ``window`` (S = T): sparse = the centres; dense = γ frames of each segment's own window at
  ``WINDOW_OFFSETS[γ]`` (γ = 2: the centre and the next native frame).
* ``segments`` (S = γT): dense = the centres of all S segments (uniform over the video, the
  authors' sampling of γT frames); sparse = every γ-th of them (dense[::γ], as the authors' code).

Both are views into the clip tensor picked by indexing: the loader is the same for every arch.
"""
from __future__ import annotations

import torch

from .config import WINDOW_OFFSETS

CENTRE = 2  # index of the segment centre in the loader's 5-frame window


def split_frames(clips: torch.Tensor, gamma: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """clips (B, S, 5, 3, H, W) → (sparse (B, T, 3, H, W), dense (B, γT, 3, H, W))."""
    if mode == "window":
        offsets = WINDOW_OFFSETS[gamma]
        sparse = clips[:, :, CENTRE]
        dense = clips[:, :, [CENTRE + o for o in offsets]]          # (B, T, γ, 3, H, W)
        return sparse, dense.flatten(1, 2)
    if mode == "segments":
        if clips.shape[1] % gamma:
            raise ValueError(f"DiST: dense_sampling=segments needs a multiple of gamma={gamma} segments, "
                             f"got {clips.shape[1]}")
        dense = clips[:, :, CENTRE]
        return dense[:, ::gamma], dense
    raise ValueError(f"DiST: unknown dense_sampling {mode!r}")


def frame_differences(dense: torch.Tensor) -> torch.Tensor:
    """Dense frames (B, γT, ...) → their temporal differences ``d_i = f_{i+1} - f_i`` (B, γT, ...), the
    last difference repeated so that the stem still sees γT frames (``stem_input: differences``).

    The 3-D stem on these is the stem on the frames with a kernel whose taps sum to zero over time:
    it cannot respond to what does not change, so the temporal encoder starts on motion alone
    (on the demo task the stem on raw frames never leaves chance: docs/dist.md "Demo")."""
    if dense.shape[1] < 2:
        raise ValueError(f"DiST: stem_input=differences needs at least 2 dense frames, got {dense.shape[1]}")
    d = dense[:, 1:] - dense[:, :-1]
    return torch.cat([d, d[:, -1:]], dim=1)
