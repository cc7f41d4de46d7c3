"""AM flow (Agrawal et al., AVSS 2025) on tdsclip's framework: ``model.arch: amflow`` (docs/amflow.md).

* :mod:`.config` — :class:`AMFlowConfig`;
* :mod:`.backbones` — the frozen image models (DINOv2 via timm, CLIP via open_clip), block by block;
* :mod:`.flow` — AM flow from q and k without the attention map;
* :mod:`.adapters` — scaled parallel adapters, the aligning encoder;
* :mod:`.temporal` — TCN / LSTM / transformer temporal heads;
* :mod:`.model` — :class:`AMFlowModel` and :func:`build`;
* :mod:`.summary` — parameters, FLOPs, activation memory (``python -m tdsclip.amflow.summary``).
"""
from .config import AMFlowConfig
from .model import AMFlowModel, build

__all__ = ["AMFlowConfig", "AMFlowModel", "build"]
