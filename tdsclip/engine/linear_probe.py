"""The demo's order-blind baseline: a linear classifier on the frozen backbone's time-averaged features.

Each clip's T centre frames go through the frozen CLIP tower alone; the last block's tokens are
summarised per frame (class token and mean patch token, concatenated) and averaged over time. An
average cannot tell a clip from its time-reversed copy, so on a task made of time-reversed class
pairs (the demo's motion directions) such a classifier is capped at 50 %: the gap between it and
TDS-CLIP is what the side network's temporal modelling adds.
"""
from __future__ import annotations

import torch
from torch import nn


def find_frozen_backbone(model: nn.Module) -> nn.Module:
    """The frozen tower inside a TDS-CLIP model (the module with ``embed`` and ``block`` methods)."""
    for m in model.modules():
        if m is not model and hasattr(m, "embed") and hasattr(m, "block") and hasattr(m, "num_layers"):
            return m
    raise ValueError("no frozen backbone (a module with embed/block/num_layers) found in the model")


@torch.no_grad()
def clip_features(backbone: nn.Module, clips: torch.Tensor, centre: int = 2) -> torch.Tensor:
    """clips (B, T, W, 3, H, W) pixel values → (B, 2C) time-averaged [CLS, mean patch] features."""
    b, t = clips.shape[:2]
    frames = clips[:, :, centre].reshape(b * t, *clips.shape[3:])
    x = backbone.embed(frames)
    for i in range(backbone.num_layers):
        x = backbone.block(i, x)
    x = x.float()
    feat = torch.cat([x[:, 0], x[:, 1:].mean(dim=1)], dim=-1)  # (B*T, 2C)
    return feat.view(b, t, -1).mean(dim=1)


@torch.no_grad()
def extract(backbone: nn.Module, batches, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    feats, labels = [], []
    for batch in batches:
        clips, y = batch[0], batch[1]
        feats.append(clip_features(backbone, clips.to(device)).cpu())
        labels.append(y.cpu())
    return torch.cat(feats), torch.cat(labels)


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, weight_decay: float = 1e-4,
               iters: int = 300) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS on standardised features (deterministic)."""
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    xs = (x - mean) / std
    lin = nn.Linear(x.shape[1], num_classes).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe")
    xs64, y64 = xs.double(), y.long()

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(xs64), y64) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # fold the standardisation into the layer so it takes raw features
    with torch.no_grad():
        w = lin.weight / std.double()
        b = lin.bias - (w * mean.double()).sum(1)
    out = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        out.weight.copy_(w.float())
        out.bias.copy_(b.float())
    return out


def linear_probe_top1(model: nn.Module, train_batches, val_batches, num_classes: int,
                      device: torch.device) -> dict:
    """Trains the probe on ``train_batches`` and returns its train/val top-1 (percent)."""
    backbone = find_frozen_backbone(model)
    xtr, ytr = extract(backbone, train_batches, device)
    xva, yva = extract(backbone, val_batches, device)
    lin = fit_linear(xtr, ytr, num_classes)
    with torch.no_grad():
        tr = (lin(xtr).argmax(1) == ytr).float().mean().item() * 100
        va = (lin(xva).argmax(1) == yva).float().mean().item() * 100
    return {"train_top1": tr, "val_top1": va, "num_train": len(ytr), "num_val": len(yva), "feature_dim": xtr.shape[1]}
