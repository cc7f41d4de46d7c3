"""tdsclip: the TDS-CLIP model (``tdsclip.model``), its video data pipeline (``tdsclip.data``) and the
training / evaluation command line (``tdsclip.cli``).

Importing ``tdsclip`` is cheap: it loads only the config; the model (torch, open_clip, tds_kernels)
is imported when ``build_model`` is first called, and the data pipeline (DALI, PyAV) only by
``tdsclip.data``.
"""
from .config import TDSCLIPConfig

__version__ = "0.1.0"


def build_model(config: TDSCLIPConfig):
    """The TDS-CLIP ``nn.Module`` for ``config``: ``model(clips)`` with clips ``(B, T, 5, 3, H, W)``
    (uint8 or float pixel values in [0, 255]) gives logits ``(B, num_classes)``. See
    :func:`tdsclip.model.build_model`."""
    from .model import build_model as _build

    return _build(config)


__all__ = ["TDSCLIPConfig", "build_model", "__version__"]
