"""Which model weights go into a checkpoint.

The frozen CLIP backbone is most of a TDS-CLIP model (86 M of ~110 M parameters for ViT-B/16) and
never changes. When it comes from published weights (``model.pretrained`` set) it can be rebuilt
from them, so checkpoints leave it out; a randomly initialised backbone (the demo) has to be
stored, or the checkpoint could not be evaluated again.
"""
from __future__ import annotations

from torch import nn


def frozen_param_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def include_frozen(save_frozen: str, model_cfg: dict) -> bool:
    if save_frozen == "yes":
        return True
    if save_frozen == "no":
        return False
    return not model_cfg.get("pretrained")


def model_state(model: nn.Module, with_frozen: bool) -> dict:
    state = model.state_dict()
    if not with_frozen:
        frozen = frozen_param_names(model)
        state = {k: v for k, v in state.items() if k not in frozen}
    return state


def load_model_state(model: nn.Module, state: dict) -> None:
    """Loads ``state``; keys it lacks must all be frozen parameters (rebuilt from pretrained weights)."""
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - frozen_param_names(model)
    if missing or result.unexpected_keys:
        raise ValueError("checkpoint does not match the model built from its config: "
                         f"missing {sorted(missing)[:8]}, unexpected {sorted(result.unexpected_keys)[:8]}")


# model fields that change how the model runs, not which weights it has
RUNTIME_FIELDS = frozenset({"fused_ops", "grad_checkpoint", "pretrained", "drop_path", "head_dropout"})


def load_checkpoint_model_state(model: nn.Module, state: dict, model_cfg: dict, path: str) -> None:
    """``load_model_state`` of a checkpoint's weights into a model built from ``model_cfg``; when they
    do not fit, a ValueError that names the model fields in which ``model_cfg`` differs from the
    config the checkpoint was trained with (rather than torch's list of tensor shapes)."""
    try:
        load_model_state(model, state["model"])
    except (ValueError, RuntimeError) as exc:
        saved = (state.get("config") or {}).get("model") or {}
        diffs = [f"model.{k}: checkpoint {saved.get(k)!r}, now {model_cfg.get(k)!r}"
                 for k in sorted(set(saved) | set(model_cfg))
                 if k not in RUNTIME_FIELDS and saved.get(k) != model_cfg.get(k)]
        if not diffs:
            raise ValueError(f"checkpoint {path!r} does not fit the model built from its own config: "
                             f"{str(exc).splitlines()[0]}") from None
        raise ValueError(f"checkpoint {path!r} was trained with another model config ({'; '.join(diffs)}): "
                         "drop those overrides, or use the checkpoint's config") from None
