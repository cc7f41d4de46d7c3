"""AdamW over the trainable parameters, as published: weight decay on every parameter.

``decay_all: false`` is the common alternative (no decay on norms, biases and 1-D tensors such as
position embeddings) and is offered as a switch, not the default.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import OptimConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters (is everything frozen?)")
    if cfg.decay_all:
        groups = [{"params": [p for _, p in named], "weight_decay": cfg.weight_decay}]
    else:
        decay = [p for n, p in named if p.ndim >= 2 and not n.endswith(".bias")]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and not n.endswith(".bias"))]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
