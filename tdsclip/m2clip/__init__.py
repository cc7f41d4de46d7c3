"""M2-CLIP (multimodal, multi-task CLIP adapting; docs/m2clip.md) on the tdsclip framework (``arch: m2clip``).

* :mod:`.config` — :class:`M2CLIPConfig`;
* :mod:`.towers` — the frozen open_clip CLIP (vision + text) and its weights;
* :mod:`.adapters` — TED-Adapter, Text-Adapter, frame adapter;
* :mod:`.video` / :mod:`.text` — the adapted encoders, the CMLM block and head;
* :mod:`.model` — :class:`M2CLIP` (forward, multi-task loss, zero-shot) and :func:`build`.
"""
from .config import M2CLIPConfig
from .model import M2CLIP, build

__all__ = ["M2CLIPConfig", "M2CLIP", "build"]
