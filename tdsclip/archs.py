"""Architecture registry: the ``arch`` field of a config's ``model:`` section picks the model family.

Every architecture shares the data pipeline, trainer, evaluation, predict, checkpoint format and
benchmarks; an architecture is one folder (``tdsclip/model`` for TDS-CLIP, ``tdsclip/<arch>/`` for
the others) that provides

* a config dataclass with an ``arch`` field, ``from_dict(dict)``, ``to_dict()``, ``override(list)``,
  and the attributes the data pipeline reads: ``num_frames``, ``num_classes``,
  ``resolved_image_size``, ``fused_ops``, ``grad_checkpoint``;
* a builder ``build(config) -> nn.Module`` whose module satisfies the model contract below.

Model contract (what the trainer, eval and predict rely on):

* ``model(clips)`` → logits ``(B, num_classes)``; clips are ``(B, T, 5, 3, H, W)`` uint8 or float
  pixel values in [0, 255] (T segments, each a 5-frame window around its centre frame). An
  architecture that needs fewer frames (the centre frame only) or denser ones picks them from
  the window.
* optional ``compute_loss(output, labels, criterion) -> (loss, logits)``: for objectives beyond
  cross-entropy on the logits (contrastive or multi-head losses). When a model defines it, the
  trainer calls ``model(clips, labels)`` in training (so that DistributedDataParallel sees every
  trainable parameter in one forward) and hands the output to ``compute_loss``; ``criterion`` is
  the trainer's label-smoothed cross-entropy.
* optional ``set_class_names(names: list[str])``: called once before training and evaluation with
  the data set's class names (text-conditioned heads build their prompts from them).
* optional ``zero_shot_logits(clips, class_names) -> (B, len(class_names))``: classification from
  class names alone (``tdsclip eval --zero-shot``); ``supports_zero_shot`` is then ``True``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

DEFAULT_ARCH = "tdsclip"


@dataclass(frozen=True)
class ArchSpec:
    name: str
    config: str    # "module:ClassName" of the config dataclass
    builder: str   # "module:function" building the nn.Module from that config
    summary: str   # one line for `tdsclip configs` / docs


ARCHS: dict[str, ArchSpec] = {}


def register_arch(name: str, config: str, builder: str, summary: str) -> None:
    ARCHS[name] = ArchSpec(name, config, builder, summary)


register_arch("tdsclip", "tdsclip.config:TDSCLIPConfig", "tdsclip.model:build_tdsclip",
              "TDS-CLIP: frozen CLIP ViT + temporal difference side network")
register_arch("m2clip", "tdsclip.m2clip.config:M2CLIPConfig", "tdsclip.m2clip.model:build",
              "M2-CLIP: TED-Adapters inside the frozen CLIP ViT, text adapter, four-head decoder, zero-shot")
register_arch("dist", "tdsclip.dist.config:DiSTConfig", "tdsclip.dist.network:build_model",
              "DiST: frozen CLIP ViT + dense temporal encoder + integration branch, contrastive text head")
register_arch("amflow", "tdsclip.amflow.config:AMFlowConfig", "tdsclip.amflow.model:build",
              "AM flow: frozen DINOv2 / CLIP ViT + attention-map-flow adapters + per-block temporal heads")


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def arch_names() -> list[str]:
    return sorted(ARCHS)


def spec(name: str) -> ArchSpec:
    if name not in ARCHS:
        raise ValueError(f"model.arch: unknown architecture {name!r}; choose one of {', '.join(arch_names())}")
    return ARCHS[name]


def config_class(name: str):
    return _load(spec(name).config)


def model_config_from_dict(values: dict | None):
    """The config object of the architecture named by ``values["arch"]`` (default ``tdsclip``)."""
    values = dict(values or {})
    name = values.get("arch", DEFAULT_ARCH)
    if not isinstance(name, str):
        raise TypeError(f"model.arch: expected a string, got {type(name).__name__}")
    return config_class(name).from_dict(values)


def build_checked(config, config_cls, model_cls, expected: str):
    """What every architecture's builder does: a dict of fields becomes ``config_cls``, anything else but a
    ``config_cls`` is a TypeError (``expected`` starts its message), the config is validated, the model built."""
    if isinstance(config, dict):
        config = config_cls.from_dict(config)
    if not isinstance(config, config_cls):
        raise TypeError(f"{expected}, got {type(config).__name__}")
    config.validate()
    return model_cls(config)


def build_model(config):
    """The ``nn.Module`` of ``config`` (any registered architecture's config object)."""
    name = getattr(config, "arch", DEFAULT_ARCH)
    return _load(spec(name).builder)(config)
