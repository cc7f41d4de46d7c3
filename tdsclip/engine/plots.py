"""PNG plots: training curves from the metrics log, and confusion matrices. Matplotlib's Agg
backend only (no display on training machines)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import read_jsonl  # noqa: E402


def _series(records, kind, key):
    xs, ys = [], []
    for r in records:
        if r.get("kind") == kind and isinstance(r.get(key), (int, float)):
            xs.append(r["step"])
            ys.append(r[key])
    return xs, ys


def plot_training(metrics_path: str, out_dir: str) -> list[str]:
    """Writes loss.png, accuracy.png and lr.png (x axis: optimiser step) next to the metrics log.
    Returns the paths written."""
    records = read_jsonl(metrics_path)
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, key, label in (("train", "loss", "train loss (per step)"), ("epoch", "train_loss", "train loss (epoch)"),
                             ("val", "loss", "val loss (no label smoothing)")):
        xs, ys = _series(records, kind, key)
        if xs:
            ax.plot(xs, ys, label=label, marker="o" if kind != "train" else None, alpha=0.6 if kind == "train" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "loss.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, key, label in (("train", "top1", "train top-1 (per step)"), ("epoch", "train_top1", "train top-1 (epoch)"),
                             ("val", "top1", "val top-1"), ("val", "top5", "val top-5")):
        xs, ys = _series(records, kind, key)
        if xs:
            ax.plot(xs, ys, label=label, marker="o" if kind != "train" else None, alpha=0.5 if kind == "train" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "accuracy.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    xs, ys = _series(records, "train", "lr")
    ax.plot(xs, ys)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate")
    ax.grid(alpha=0.3)
    save(fig, "lr.png")
    return written


def plot_confusion(matrix: np.ndarray, class_names: list[str] | None, path: str, title: str = "confusion matrix") -> str:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.35 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if n <= 40:  # names and counts stay legible only for small label sets
        names = class_names if class_names and len(class_names) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90)
        ax.set_yticks(range(n), names)
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                            color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
