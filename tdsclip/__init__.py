"""tdsclip: the TDS-CLIP model (``tdsclip.model``), its video data pipeline (``tdsclip.data``) and the
training / evaluation command line (``tdsclip.cli``).

Importing ``tdsclip`` is cheap: it loads only the config; the model (torch, open_clip, tds_kernels)
is imported when ``build_model`` is first called, and the data pipeline (DALI, PyAV) only by
``tdsclip.data``.
"""
from .config import TDSCLIPConfig


def build_model(config):
    """The ``nn.Module`` of a model config of any architecture (``tdsclip.archs``; a
    :class:`TDSCLIPConfig` gives TDS-CLIP): ``model(clips)`` with clips ``(B, T, 5, 3, H, W)`` (uint8
    or float pixel values in [0, 255]) gives logits ``(B, num_classes)``."""
    from .archs import build_model as _build

    return _build(config)


def from_pretrained(dir_or_hub_id: str, **kwargs):
    """The model of any architecture saved by ``save_pretrained`` (a directory with config.json +
    model.safetensors, or a Hugging Face hub id); see :func:`tdsclip.hub.from_pretrained`."""
    from .hub import from_pretrained as _load

    return _load(dir_or_hub_id, **kwargs)


def __getattr__(name: str):
    # The version is written once, in tds_kernels/version.py; read lazily, since importing the
    # tds_kernels package loads torch and importing tdsclip stays cheap.
    if name == "__version__":
        from tds_kernels.version import __version__

        return __version__
    if name == "TDSCLIP":  # imported on first use: torch / open_clip / tds_kernels are slow to import
        from .model import TDSCLIP

        return TDSCLIP
    raise AttributeError(f"module 'tdsclip' has no attribute {name!r}")


__all__ = ["TDSCLIPConfig", "TDSCLIP", "build_model", "from_pretrained", "__version__"]
