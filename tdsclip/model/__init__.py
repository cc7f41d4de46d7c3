"""The TDS-CLIP model (docs/model.md §1–3): a frozen open_clip ViT, the trainable side network, the head.

* :func:`build_tdsclip` / :class:`TDSCLIP` — the model (``tdsclip.build_model`` builds any architecture);
* :mod:`.backbone` — the frozen spatial encoder (:class:`FrozenViT`) and weight loading;
* :mod:`.side_network` — stems, side connections, side blocks;
* :mod:`.head` — BN + mean pooling + classifier;
* :mod:`.layers` — token-layout building blocks, memory-lean autograd functions, checkpointing;
* :mod:`.summary` — parameter counts, FLOPs and activation memory (``python -m tdsclip.model.summary``).
"""
from .backbone import FrozenViT, build_backbone
from .head import ClassifierHead
from .network import TDSCLIP, build_tdsclip
from .side_network import SideBlock, SideConnection, SideNetwork

__all__ = ["TDSCLIP", "build_tdsclip", "FrozenViT", "build_backbone", "SideNetwork", "SideBlock", "SideConnection",
           "ClassifierHead"]
