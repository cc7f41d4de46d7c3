"""The frozen spatial encoder (docs/model.md §2): an open_clip VisionTransformer whose per-block outputs
feed the side network.

``FrozenViT`` keeps the patch embedding, class / position embeddings, ``ln_pre`` and the L blocks
of the tower; ``ln_post`` and ``proj`` are never used, so they are not kept. Its parameters have
``requires_grad=False``, it stays in eval mode whatever ``train()`` says, and every method runs
under ``torch.no_grad()``: no backbone activation is ever saved for backward.

Weights (``config.pretrained``): an open_clip tag (``"openai"``: fetched through open_clip's cache /
the Hugging Face hub), or a local file: an open_clip / OpenAI checkpoint (full CLIP or vision tower
only, ``state_dict`` nesting and ``module.`` prefixes allowed, safetensors too) or OpenAI's
TorchScript archive; or an ``hf-hub:org/repo`` backbone name (open_clip loads config and weights).
The tower is built by ``open_clip.create_model`` (public API). OpenAI weights were trained with
QuickGELU and the published TDS-CLIP code always uses it: ``quick_gelu=None`` means QuickGELU for
OpenAI-architecture backbones (ViT-B-16, ViT-L-14) with random init or a local file, the tag's flag for an
open_clip tag; set ``quick_gelu: false`` for a local non-OpenAI (e.g. LAION) checkpoint.
"""
from __future__ import annotations

import contextlib
import logging
import os
import types
import zipfile

import torch
from torch import nn

from tds_kernels.ops.sme_stem.reference import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ..config import TINY_VISION_CFG, TDSCLIPConfig

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_UNUSED_KEYS = ("ln_post.", "proj", "attn_pool", "attn_pool_contrastive.")


def normalise_images(images: torch.Tensor, mean, std, dtype: torch.dtype) -> torch.Tensor:
    """CLIP normalisation of pixel values in [0, 255] (uint8 or float), images (M, 3, H, W); the same
    arithmetic as the SME stem's reference (``(x/255 - mean) / std``)."""
    x = images.to(dtype) / 255.0
    m = torch.as_tensor(mean, dtype=dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=images.device).view(1, 3, 1, 1)
    return (x - m) / s


class FrozenViT(nn.Module):
    """Frozen CLIP ViT: images ``(M, 3, H, W)`` → tokens ``X_l`` ``(M, N+1, C)`` after each block l.

    Use :meth:`embed` then :meth:`block` for ``l = 0..L-1`` (the model interleaves them with the
    side network so that each ``X_l`` can be freed once it has been consumed), or :meth:`forward`
    for the list of all L outputs.
    """

    def __init__(self, visual: nn.Module, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD):
        super().__init__()
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.resblocks = visual.transformer.resblocks
        # per block, the in-place form of its MLP activation (None: run open_clip's block); decided once here,
        # not on every call of the hot block loop
        self._inplace_acts = [_inplace_activation(blk) for blk in self.resblocks]
        # open_clip >= 2.23 runs its blocks batch-first (N, L, D); older versions sequence-first.
        self.batch_first = bool(getattr(visual.transformer, "batch_first", False))
        self.width = int(visual.transformer.width)
        self.patch_size = int(self.conv1.kernel_size[0])
        self.image_size = tuple(int(s) for s in getattr(visual, "image_size", (0, 0)))
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.requires_grad_(False)
        super().train(False)

    @property
    def num_layers(self) -> int:
        return len(self.resblocks)

    def train(self, mode: bool = True) -> "FrozenViT":
        return super().train(False)  # frozen: always eval (no dropout / patch dropout / BN updates)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel values (M, 3, H, W) in [0, 255] → block input (M, N+1, C): CLIP normalisation, patch
        embedding, class token, position embedding, ln_pre (open_clip's ``_embeds`` without patch
        dropout, which eval mode disables)."""
        x = normalise_images(images, self.mean, self.std, self.dtype)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (M, N, C), patches row-major
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    @torch.no_grad()
    def block(self, index: int, x: torch.Tensor, inplace_mlp: bool = False) -> torch.Tensor:
        """Block ``index`` on batch-first tokens (M, N+1, C) → ``X_{index+1}`` (M, N+1, C).

        ``inplace_mlp`` (the model's fused path): the same arithmetic as open_clip's block, in the same
        order, with the MLP's activation computed in place in its hidden tensor (M, N+1, 4C). open_clip's
        QuickGELU ``x * sigmoid(1.702 x)`` allocates two more tensors of that size per block; fresh
        buffers of that size are page-faulted in on every call on the CPU, ~7 % of the frozen forward
        at ViT-B/16 (bench/target_notes.md). Results are bitwise equal (tests/test_model_backbone.py)."""
        blk = self.resblocks[index]
        if not self.batch_first:
            x = x.transpose(0, 1)
        act = self._inplace_acts[index]
        if inplace_mlp and act is not None:
            x = _block_inplace_mlp(blk, x, act)
        else:
            x = blk(x)
        return x if self.batch_first else x.transpose(0, 1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.embed(images)
        outs = []
        for i in range(self.num_layers):
            x = self.block(i, x)
            outs.append(x)
        return outs


def _inplace_activation(blk: nn.Module):
    """The in-place form of ``blk``'s MLP activation, or None when ``blk`` is not a plain open_clip
    ResidualAttentionBlock (cross-attention kv norm, other activations: run the block as it is)."""
    mlp = getattr(blk, "mlp", None)
    if hasattr(blk, "ln_1_kv") or mlp is None or not all(hasattr(mlp, n) for n in ("c_fc", "gelu", "c_proj")):
        return None
    from open_clip.transformer import QuickGELU

    if isinstance(mlp.gelu, QuickGELU):
        return _quick_gelu_
    return None  # nn.GELU allocates one output only: nothing to gain


def _quick_gelu_(h: torch.Tensor) -> torch.Tensor:
    """open_clip's QuickGELU, ``h * sigmoid(1.702 h)``, the same three operations, written into ``h``."""
    t = torch.mul(h, 1.702)
    return h.mul_(t.sigmoid_())


def _block_inplace_mlp(blk: nn.Module, x: torch.Tensor, activation_) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock.forward (self-attention, no mask) with the activation in place."""
    y = blk.ln_1(x)
    x = x + blk.ls_1(blk.attn(y, y, y, need_weights=False)[0])
    h = blk.mlp.c_fc(blk.ln_2(x))
    h = activation_(h)
    return x + blk.ls_2(blk.mlp.c_proj(h))


# ---------------------------------------------------------------------------------------------
# construction

# Backbones with OpenAI CLIP's architecture: the published TDS-CLIP code always runs their blocks with
# QuickGELU (docs/model.md §7), so do we unless an open_clip tag says otherwise or quick_gelu is set.
OPENAI_ARCHS = ("ViT-B-16", "ViT-L-14", "ViT-B-32", "ViT-L-14-336")
TINY_OPEN_CLIP_NAME = "tdsclip-tiny"
# The text tower open_clip builds beside the vision tower is never used: a minimal one (a few
# thousand parameters instead of 63 M / 123 M) is passed as create_model's text_cfg override.
_STUB_TEXT_CFG = dict(context_length=2, vocab_size=2, width=64, heads=1, layers=1)
_TINY_REGISTERED = False


def open_clip_name(backbone: str) -> str:
    """The open_clip model name of a ``backbone`` field: ``tiny`` is registered (once, through
    ``open_clip.add_model_config``) as ``tdsclip-tiny``; other names (``ViT-B-16``, ``hf-hub:org/repo``)
    are open_clip's own."""
    global _TINY_REGISTERED
    if backbone != "tiny":
        return backbone
    if not _TINY_REGISTERED:
        import json
        import tempfile

        import open_clip

        folder = tempfile.mkdtemp(prefix="tdsclip_open_clip_")
        path = os.path.join(folder, TINY_OPEN_CLIP_NAME + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"embed_dim": 64, "vision_cfg": dict(TINY_VISION_CFG), "text_cfg": _STUB_TEXT_CFG}, f)
        open_clip.add_model_config(path)
        _TINY_REGISTERED = True
    return TINY_OPEN_CLIP_NAME


def default_quick_gelu(config: TDSCLIPConfig) -> bool:
    """QuickGELU unless told: ``config.quick_gelu`` if set; else the open_clip tag's flag for a tag;
    else True for OpenAI-architecture backbones (random init or a local file: the published code's
    blocks) and for OpenAI TorchScript archives, and the open_clip model config's flag otherwise."""
    if config.quick_gelu is not None:
        return config.quick_gelu
    pretrained = config.pretrained
    if pretrained is not None and os.path.isfile(pretrained) and _is_torchscript(pretrained):
        return True
    if config.backbone.startswith("hf-hub:"):
        return False  # the hub config's own quick_gelu flag applies (open_clip reads it)
    if pretrained is not None and not os.path.isfile(pretrained):
        import open_clip

        return bool((open_clip.get_pretrained_cfg(config.backbone, pretrained) or {}).get("quick_gelu", False))
    if config.backbone in OPENAI_ARCHS:
        return True
    if config.backbone == "tiny":
        return False
    import open_clip

    return bool((open_clip.get_model_config(config.backbone) or {}).get("quick_gelu", False))


def build_backbone(config: TDSCLIPConfig) -> FrozenViT:
    """The frozen tower for ``config`` with its weights (random when ``pretrained`` is None), cast to
    ``backbone_dtype``. Built through open_clip's public ``create_model`` (``hf-hub:`` names load their
    config and weights from the hub there); weights of a tag or a local file are loaded by
    :func:`load_visual_weights`. Works under ``with torch.device("meta")`` for random weights."""
    import open_clip

    name = open_clip_name(config.backbone)
    quick_gelu = default_quick_gelu(config)
    kwargs = dict(force_image_size=config.resolved_image_size, force_quick_gelu=quick_gelu,
                  device=torch.get_default_device())
    hub = config.backbone.startswith("hf-hub:")
    if hub:
        checkpoint, mean, std = None, None, None
        try:  # config and weights from the hub (the full CLIP: its strict load needs the real text tower)
            clip = open_clip.create_model(name, **kwargs)
        except Exception as exc:
            raise RuntimeError(f"could not load backbone {config.backbone!r} through open_clip ({exc}); check the "
                               "network (HF_HUB_OFFLINE unset) or the repository name") from exc
    else:
        checkpoint, mean, std, _ = _resolve_pretrained(config)
        # quick_gelu=False overrides a "-quickgelu" model config when the user says so
        with _without_random_init_warning():
            clip = open_clip.create_model(name, load_weights=False, text_cfg=_STUB_TEXT_CFG, quick_gelu=quick_gelu,
                                          **kwargs)
    visual = clip.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
        raise ValueError(f"backbone {config.backbone!r} did not build a VisionTransformer")
    if hub:
        pre = getattr(visual, "preprocess_cfg", None) or {}
        mean, std = tuple(pre.get("mean") or OPENAI_CLIP_MEAN), tuple(pre.get("std") or OPENAI_CLIP_STD)
    if checkpoint is not None:
        load_visual_weights(visual, checkpoint)
    vit = FrozenViT(visual, mean, std)
    return vit.to(DTYPES[config.backbone_dtype])


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _without_random_init_warning():
    """open_clip logs "No pretrained weights loaded ... initialized randomly" when it builds the architecture
    only; here that is intended (the weights are loaded afterwards, or random init was asked for)."""
    flt = _DropRandomInitWarning()
    logging.getLogger().addFilter(flt)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(flt)


def _resolve_pretrained(config: TDSCLIPConfig):
    """(checkpoint path or None, mean, std, QuickGELU flag the weights were trained with)."""
    pretrained = config.pretrained
    if pretrained is None:
        return None, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, False
    if os.path.isfile(pretrained):
        return pretrained, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, _is_torchscript(pretrained)
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(config.backbone, pretrained)
    if not tag_cfg:
        raise ValueError(f"pretrained {pretrained!r} is neither a file nor an open_clip tag of {config.backbone}")
    try:
        path = open_clip.download_pretrained(tag_cfg)
    except Exception as exc:  # offline, no cache, hub error: say what to do
        raise RuntimeError(
            f"could not fetch the {config.backbone} weights for tag {pretrained!r} through open_clip ({exc}); "
            "check the network (HF_HUB_OFFLINE unset) or download them and pass the file as "
            "pretrained=/path/to/checkpoint") from exc
    if not path:
        raise RuntimeError(f"open_clip returned no checkpoint for {config.backbone} / {pretrained!r}")
    mean = tuple(tag_cfg.get("mean") or OPENAI_CLIP_MEAN)
    std = tuple(tag_cfg.get("std") or OPENAI_CLIP_STD)
    return path, mean, std, bool(tag_cfg.get("quick_gelu", False)) or _is_torchscript(path)


def _is_torchscript(path: str) -> bool:
    """OpenAI's original checkpoints are TorchScript archives (zip files holding code/ and constants.pkl)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_state_dict(path: str) -> dict:
    """The tensors of a checkpoint file: safetensors, torch.save'd dicts (``state_dict`` / ``model``
    nesting, ``module.`` prefixes) or a TorchScript archive."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path, device="cpu")
    elif _is_torchscript(path):
        sd = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path}: no state_dict found in the checkpoint")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()
            if isinstance(v, torch.Tensor)}


def visual_state_dict(sd: dict) -> dict:
    """The vision-tower part of a full CLIP (``visual.*``) or tower-only state_dict, without the
    unused ``ln_post`` / ``proj``."""
    if any(k.startswith("visual.") for k in sd):
        sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    return {k: v for k, v in sd.items() if not k.startswith(_UNUSED_KEYS)}


def load_visual_weights(visual: nn.Module, path: str) -> None:
    """Loads a checkpoint into an open_clip VisionTransformer (every weight of the blocks and
    embeddings must be present; the position embedding is resized if the image size differs)."""
    from open_clip.model import resize_pos_embed

    sd = visual_state_dict(read_state_dict(path))
    if "positional_embedding" in sd:
        wrapped = {"visual.positional_embedding": sd["positional_embedding"]}
        resize_pos_embed(wrapped, types.SimpleNamespace(visual=visual))
        sd["positional_embedding"] = wrapped["visual.positional_embedding"]
    result = visual.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_UNUSED_KEYS)]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path} does not match the vision tower: missing {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected {result.unexpected_keys[:8]}")
