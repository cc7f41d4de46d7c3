"""Evaluation arithmetic: multi-view score averaging, top-k, per-class accuracy, confusion matrix.

The published test protocol (docs/model.md §6) scores each video on several views (3 spatial crops × K
temporal clips), averages the *softmax* probabilities over the views, and ranks the average.
These functions hold only that arithmetic (no model, no data), so tests can check them on
hand-made numbers.
"""
from __future__ import annotations

import torch


def average_view_probs(logits: torch.Tensor) -> torch.Tensor:
    """(N, V, C) logits of V views per video → (N, C) softmax probabilities averaged over views.

    Softmax first, then the mean (not a softmax of mean logits): a view that is very sure counts for
    no more than a probability of 1.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (videos, views, classes), got shape {tuple(logits.shape)}")
    return torch.softmax(logits.float(), dim=-1).mean(dim=1)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of rows whose label is among the k highest scores, for each k (k capped at #classes)."""
    maxk = min(max(ks), scores.shape[1])
    top = scores.topk(maxk, dim=1).indices
    hit = top.eq(labels.view(-1, 1))
    return {k: int(hit[:, :min(k, maxk)].any(dim=1).sum()) for k in ks}


class ViewAccumulator:
    """Collects per-view logits keyed by video index and averages softmax scores per video.

    Works whether a loader yields all views of a video in one sample (``add_grouped``) or each view
    as its own sample with a video index (``add_views``), and on any rank split (see ``merge``).
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.prob_sum: dict[int, torch.Tensor] = {}
        self.views: dict[int, int] = {}
        self.labels: dict[int, int] = {}

    def add_views(self, logits: torch.Tensor, labels: torch.Tensor, video_ids: torch.Tensor) -> None:
        """``logits`` (M, C): one row per view; ``video_ids`` (M,) which video each row belongs to."""
        probs = torch.softmax(logits.detach().float().cpu(), dim=-1)
        for p, y, v in zip(probs, labels.cpu().tolist(), video_ids.cpu().tolist()):
            if v in self.labels and self.labels[v] != y:
                raise ValueError(f"video {v} was given two labels ({self.labels[v]} and {y})")
            self.labels[v] = y
            self.prob_sum[v] = self.prob_sum.get(v, 0) + p
            self.views[v] = self.views.get(v, 0) + 1

    def add_grouped(self, logits: torch.Tensor, labels: torch.Tensor, video_ids: torch.Tensor) -> None:
        """``logits`` (N, V, C): V views per video."""
        n, v, c = logits.shape
        self.add_views(logits.reshape(n * v, c), labels.repeat_interleave(v), video_ids.repeat_interleave(v))

    def state(self) -> dict:
        return {"prob_sum": self.prob_sum, "views": self.views, "labels": self.labels}

    def merge(self, other_state: dict) -> None:
        """Adds another rank's collected views (e.g. from ``all_gather_object``)."""
        for v, p in other_state["prob_sum"].items():
            self.prob_sum[v] = self.prob_sum.get(v, 0) + p
            self.views[v] = self.views.get(v, 0) + other_state["views"][v]
            self.labels[v] = other_state["labels"][v]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(video_ids, mean probabilities (N, C), labels (N,), views per video (N,)), sorted by video id."""
        ids = sorted(self.labels)
        if not ids:
            return (torch.zeros(0, dtype=torch.long), torch.zeros(0, self.num_classes),
                    torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        views = torch.tensor([self.views[v] for v in ids])
        probs = torch.stack([self.prob_sum[v] for v in ids]) / views.unsqueeze(1)
        return torch.tensor(ids), probs, torch.tensor([self.labels[v] for v in ids]), views


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts; rows are true classes, columns predictions."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarise(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str] | None = None) -> dict:
    """Top-1/top-5 (percent), per-class accuracy, mean class accuracy and the confusion matrix."""
    n, c = probs.shape
    if n == 0:
        raise ValueError("no videos were evaluated (empty data set?)")
    hits = topk_correct(probs, labels, (1, 5))
    pred = probs.argmax(dim=1)
    cm = confusion_matrix(pred, labels, c)
    support = cm.sum(dim=1)
    names = class_names if class_names and len(class_names) == c else [str(i) for i in range(c)]
    per_class = {}
    for i in range(c):
        if support[i] > 0:
            per_class[names[i]] = {"top1": 100.0 * float(cm[i, i]) / float(support[i]), "support": int(support[i])}
    present = [v["top1"] for v in per_class.values()]
    return {
        "num_videos": n,
        "top1": 100.0 * hits[1] / n,
        "top5": 100.0 * hits[5] / n,
        "mean_class_top1": sum(present) / len(present),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": names,
    }
