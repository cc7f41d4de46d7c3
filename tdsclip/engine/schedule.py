"""Learning-rate schedule: linear warm-up then cosine to a floor, stepped per optimiser update.

The published recipe (docs/model.md §6) is 4 warm-up epochs then cosine to 0 over the rest of training.
It is expressed in optimiser updates (iterations), not epochs, so that the learning rate moves
smoothly inside an epoch and a run resumed mid-epoch lands on exactly the same values.
"""
from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at update ``step`` (0-based: the value used by update ``step``).

    * ``step < warmup_steps``: rises linearly, ``(step + 1) / warmup_steps`` (never 0, so the first
      update already moves the weights);
    * then a half cosine from 1 down to ``min_factor``, reached at ``step == total_steps``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps == 0:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule:
    """Sets every param group's ``lr`` to ``base_lr * factor(step)`` before each update.

    Unlike ``LambdaLR`` it holds no closures, so its ``state_dict()`` is plain ints and floats
    (loadable with ``torch.load(weights_only=True)``), and the learning rate is a pure function of
    the update count, which makes resuming exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                 min_lr_ratio: float = 0.0):
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.base_lrs = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = lr
        self.step_count = 0  # optimiser updates done so far
        warmup_cosine_factor(0, self.total_steps, self.warmup_steps)  # validates the arguments
        self._apply()

    def factor(self, step: int | None = None) -> float:
        s = self.step_count if step is None else step
        return warmup_cosine_factor(s, self.total_steps, self.warmup_steps, self.min_lr_ratio)

    def _apply(self) -> None:
        f = self.factor()
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * f

    def step(self) -> None:
        """Call after each optimiser update: moves to the learning rate of the next one."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr_ratio": self.min_lr_ratio,
                "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        # total/warm-up steps come from the (possibly edited) config of the resumed run; only the
        # position is restored, so a resume with the same config continues the same curve.
        self.step_count = int(state["step_count"])
        self._apply()
