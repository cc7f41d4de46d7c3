"""DiST (Qing et al., ICCV 2023) on this package's framework: ``model.arch: dist`` (docs/dist.md).

* :class:`DiSTConfig` (:mod:`.config`) — the model config;
* :func:`build_model` / :class:`DiST` (:mod:`.network`) — the model;
* :mod:`.frames` — which frames the spatial (sparse) and temporal (dense) encoders see;
* :mod:`.temporal` — 3-D stem and R(2+1)D T-Blocks; :mod:`.integration` — I-Block FFN, Ψ and Φ;
* :mod:`.head` — adaptive pooling, contrastive / linear heads; :mod:`.text` — frozen text tower;
* :mod:`.summary` — parameters, FLOPs and activation memory (``python -m tdsclip.dist.summary``).
"""
from .config import DiSTConfig
from .network import DiST, build_model

__all__ = ["DiSTConfig", "DiST", "build_model"]
