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
