"""The training loop: AdamW + warm-up/cosine per step, label-smoothed CE, AMP, gradient
accumulation, DDP, checkpoints every epoch and on SIGTERM/SIGINT, exact resume, NaN handling,
JSON-lines metrics, a progress bar and plots.

Exact resume rests on three facts: the batches of epoch ``e`` depend only on ``(seed, e)`` (the
data source's contract), the learning rate depends only on the update count, and a checkpoint holds
everything else that changes (weights, BN statistics, optimiser moments, scaler, RNG states, the
position inside the epoch and the running epoch statistics). A resumed run therefore replays the
remaining batches of the interrupted epoch and reaches the same weights.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from . import checkpoint as ckpt
from .amp import autocast, make_scaler
from .config import TrainConfig
from .distributed import (DistInfo, all_reduce_max, all_reduce_sum, broadcast_buffers, broadcast_object,
                          gather_objects)
from .metrics import MetricsLog
from .optim import build_optimizer
from .progress import Progress
from .rng import get_rng_state, set_rng_state
from .schedule import WarmupCosineSchedule
from .signals import StopRequest
from .state import include_frozen, load_checkpoint_model_state, model_state


class _guarded:
    """Iterates a data source; if it fails *after* a stop was requested, ends quietly instead.

    A SIGTERM sent to the whole process group (a scheduler's pre-emption, Ctrl-C in a terminal)
    also reaches the data loader's worker processes, which die at once; the loader then raises.
    The stop request is what the loop must honour: it is between two steps, so it can still
    write its checkpoint.
    """

    def __init__(self, iterable, stop: StopRequest):
        self.it, self.stop, self.broken = iter(iterable), stop, False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self.it)
        except StopIteration:
            raise
        except Exception:
            if self.stop.requested:
                self.broken = True
                raise StopIteration from None
            raise


class NonFiniteLossError(RuntimeError):
    """A loss was NaN/inf under ``on_nan: stop``; the message names the step and the last checkpoint."""


@dataclass
class FitResult:
    status: str                 # "done" | "stopped" (signal or max_steps; a checkpoint was written)
    epoch: int                  # epochs completed
    global_step: int            # optimiser updates completed
    checkpoint: str | None      # the last checkpoint written (or resumed from)
    val: dict | None            # the last validation metrics (top1, top5, loss, num)
    wall_s: float
    skipped_steps: int = 0
    signal: int | None = None   # the signal that stopped the run, if one did


def _buffers(model: nn.Module) -> list[torch.Tensor]:
    return list(model.buffers())


@torch.no_grad()
def validate(model: nn.Module, batches, device: torch.device, amp: str, info: DistInfo,
             label_smoothing: float = 0.0) -> dict:
    """Single-view validation over this rank's share, summed over ranks: loss, top-1, top-5 (percent)."""
    was_training = model.training
    model.eval()
    crit = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="sum")
    sums = torch.zeros(4, dtype=torch.float64)  # loss, top1 hits, top5 hits, count
    for clips, labels in batches:
        clips = clips.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast(amp, device):
            logits = model(clips)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top.eq(labels.view(-1, 1))
        sums += torch.tensor([float(crit(logits, labels)), float(hit[:, 0].sum()), float(hit.any(1).sum()),
                              float(labels.numel())], dtype=torch.float64)
    sums = all_reduce_sum(sums.to(device if info.backend == "nccl" else "cpu"), info).cpu()
    model.train(was_training)
    n = max(sums[3].item(), 1.0)
    return {"loss": sums[0].item() / n, "top1": 100 * sums[1].item() / n, "top5": 100 * sums[2].item() / n,
            "num": int(sums[3].item())}


class Trainer:
    def __init__(self, cfg: TrainConfig, model: nn.Module, data, info: DistInfo, *, log=print,
                 stop: StopRequest | None = None, fault_hook=None):
        """``model``: an ``nn.Module`` mapping clips to logits, frozen parts with ``requires_grad=False``.
        ``data``: a data source (see :mod:`tdsclip.engine.datasource`). ``log``: where rank 0's text goes.
        ``fault_hook(global_step, micro_index, loss) -> loss``: test-only hook to inject failures."""
        self.cfg, self.data, self.info = cfg, data, info
        self.out = cfg.runtime.output
        self.log = log if info.is_main else (lambda *a, **k: None)
        self.stop = stop or StopRequest()
        self.fault_hook = fault_hook
        self.device = info.device
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.accum = cfg.optim.grad_accum
        self.batches_per_epoch = data.num_train_batches()
        self.steps_per_epoch = self.batches_per_epoch // self.accum
        if self.steps_per_epoch < 1:
            raise ValueError(f"an epoch has {self.batches_per_epoch} batches of {cfg.data.batch_size} clips on each "
                             f"of {info.world_size} rank(s), fewer than optim.grad_accum={self.accum}: "
                             "use a smaller batch, fewer ranks or more data")
        total = self.steps_per_epoch * cfg.optim.epochs
        warmup = min(total, int(round(cfg.optim.warmup_epochs * self.steps_per_epoch)))
        self.schedule = WarmupCosineSchedule(self.optimizer, total, warmup, cfg.optim.min_lr_ratio)
        self.scaler = make_scaler(cfg.runtime.amp, self.device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        # architectures with their own objective (contrastive, multi-head) compute it from the forward's output
        self.custom_loss = callable(getattr(model, "compute_loss", None))
        if info.enabled:
            self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.ddp = self.model
        self.with_frozen = include_frozen(cfg.runtime.save_frozen, cfg.model.to_dict())
        # position
        self.epoch = 0            # the epoch in progress (0-based)
        self.step_in_epoch = 0    # updates done in it
        self.global_step = 0      # updates done in all
        self.epoch_stats = [0.0, 0.0, 0.0]  # loss sum, top-1 hits, clips (all ranks) of the epoch so far
        self.last_checkpoint: str | None = None
        self.last_val: dict | None = None
        self.skipped = 0
        self.skipped_in_a_row = 0  # --on-nan skip: updates skipped since the last good one
        self.metrics = MetricsLog(os.path.join(self.out, "metrics.jsonl") if info.is_main else None)

    # ----------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        rng = gather_objects(get_rng_state(), self.info)  # collective: every rank calls it
        return {
            "format": ckpt.FORMAT_VERSION,
            "model": model_state(self.model, self.with_frozen),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_stats": list(self.epoch_stats),
            "skipped_steps": self.skipped,
            "skipped_in_a_row": self.skipped_in_a_row,
            "world_size": self.info.world_size,
            "config": self.cfg.to_dict(),
            "class_names": list(getattr(self.data, "class_names", []) or []),
            "val": dict(self.last_val) if self.last_val else {},
            "torch_version": str(torch.__version__),
        }

    def save(self) -> str | None:
        state = self.state_dict()
        path = None
        if self.info.is_main:
            path = os.path.join(self.out, ckpt.checkpoint_name(self.global_step))
            ckpt.atomic_torch_save(state, path)
            ckpt.prune_checkpoints(self.out, self.cfg.runtime.keep_checkpoints, protect=(path,))
        self.last_checkpoint = broadcast_object(path, self.info)
        return self.last_checkpoint

    def load(self, path: str) -> None:
        state = ckpt.load_checkpoint(path, map_location="cpu")
        load_checkpoint_model_state(self.model, state, self.cfg.model.to_dict(), path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.epoch_stats = [float(v) for v in state.get("epoch_stats", [0.0, 0.0, 0.0])]
        self.skipped = int(state.get("skipped_steps", 0))
        self.skipped_in_a_row = int(state.get("skipped_in_a_row", 0))
        self.last_val = dict(state.get("val") or {}) or None
        rng = state.get("rng") or []
        if len(rng) == self.info.world_size:
            set_rng_state(rng[self.info.rank])
        elif rng:
            self.log(f"train: checkpoint was written by {len(rng)} rank(s), this run has {self.info.world_size}: "
                     "restoring rank 0's RNG state on every rank (data order is unaffected; it depends on seed and epoch)")
            set_rng_state(rng[0])
        if self.step_in_epoch >= self.steps_per_epoch:  # saved at the very end of an epoch
            self.epoch, self.step_in_epoch, self.epoch_stats = self.epoch + 1, 0, [0.0, 0.0, 0.0]
        self.last_checkpoint = path

    # ----------------------------------------------------------------------------- training
    def _nonfinite_message(self, value: float, batch_index: int) -> str:
        last = self.last_checkpoint or "none yet (no epoch finished)"
        return (f"non-finite loss ({value}) at optimiser step {self.global_step + 1} "
                f"(epoch {self.epoch + 1}/{self.cfg.optim.epochs}, batch {batch_index + 1} of the epoch); "
                f"stopped without updating the weights. Last good checkpoint: {last}. "
                f"Resume from it with --resume {self.last_checkpoint or 'PATH'} (perhaps with a lower lr or --amp bf16), "
                "or pass --on-nan skip to skip such steps.")

    def fit(self) -> FitResult:
        cfg, info = self.cfg, self.info
        t_start = time.perf_counter()
        epochs = cfg.optim.epochs
        total_steps = self.steps_per_epoch * epochs
        if self.global_step:
            self.metrics.truncate_after(self.global_step)
            self.metrics.write("event", self.global_step, event="resume", checkpoint=self.last_checkpoint)
        progress = Progress(total_steps, self.global_step, desc=cfg.name, enabled=info.is_main and cfg.runtime.progress,
                            main=info.is_main)
        status = "done"
        window = [0.0, 0.0, 0.0]  # loss sum, hits, clips since the last train record
        t_window = time.perf_counter()
        skip_mode = cfg.runtime.on_nan == "skip"
        reduce_dev = self.device if info.backend == "nccl" else torch.device("cpu")
        try:
            while self.epoch < epochs and status == "done":
                start_batch = self.step_in_epoch * self.accum
                self.ddp.train()
                batch_index = start_batch - 1
                group_bad = False
                group_loss = group_hits = group_clips = 0.0
                stop_now = False
                batches = _guarded(self.data.train_batches(self.epoch, start_batch), self.stop)
                for micro, (clips, labels) in enumerate(batches):
                    batch_index = start_batch + micro
                    if batch_index >= self.steps_per_epoch * self.accum:
                        break  # a trailing partial accumulation group is dropped, as with drop_last
                    last_micro = (batch_index % self.accum) == self.accum - 1
                    clips = clips.to(self.device, non_blocking=True)
                    labels = labels.to(self.device, non_blocking=True)
                    saved = [b.clone() for b in _buffers(self.model)] if skip_mode else None
                    sync = contextlib.nullcontext() if (last_micro or not info.enabled) else self.ddp.no_sync()
                    with sync:
                        if not group_bad:
                            with autocast(cfg.runtime.amp, self.device):
                                if self.custom_loss:  # tdsclip.archs model contract
                                    output = self.ddp(clips, labels)
                                else:
                                    logits = self.ddp(clips)
                            if self.custom_loss:
                                loss, logits = self.model.compute_loss(output, labels, self.criterion)
                            else:
                                loss = self.criterion(logits.float(), labels)
                            if self.fault_hook is not None:
                                loss = self.fault_hook(self.global_step, batch_index, loss)
                            # every rank learns whether any rank saw a non-finite loss, so all skip or stop together
                            bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).item() else 1.0], device=reduce_dev)
                            if all_reduce_max(bad, info).item() > 0:
                                value = loss.detach().item()
                                self.metrics.write("event", self.global_step, event="nonfinite_loss",
                                                   value=value, epoch=self.epoch, batch=batch_index,
                                                   action="skip" if skip_mode else "stop")
                                if not skip_mode:
                                    raise NonFiniteLossError(self._nonfinite_message(value, batch_index))
                                for b, s in zip(_buffers(self.model), saved):
                                    b.copy_(s)  # undo that forward's BatchNorm statistics update
                                group_bad = True
                                progress.write(f"train: non-finite loss at step {self.global_step + 1} "
                                               f"(batch {batch_index + 1}), update skipped (--on-nan skip)")
                            else:
                                self.scaler.scale(loss / self.accum).backward()
                                n = labels.numel()
                                group_loss += loss.detach().item() * n
                                group_hits += float((logits.detach().argmax(1) == labels).sum())
                                group_clips += n
                    if not last_micro:
                        continue
                    # ---- one optimiser update per accumulation group
                    if not group_bad:
                        if cfg.optim.clip_grad_norm:
                            self.scaler.unscale_(self.optimizer)
                            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
                        self.scaler.step(self.optimizer)
                        self.scaler.update()
                    else:
                        self.skipped += 1
                        self.skipped_in_a_row += 1
                        limit = cfg.runtime.max_skipped_steps
                        if limit and self.skipped_in_a_row >= limit:
                            self.metrics.write("event", self.global_step, event="nonfinite_limit",
                                               skipped_in_a_row=self.skipped_in_a_row)
                            raise NonFiniteLossError(
                                f"{self.skipped_in_a_row} optimiser updates in a row had a non-finite loss and were "
                                f"skipped (--on-nan skip stops at runtime.max_skipped_steps={limit}); last at step "
                                f"{self.global_step + 1} (epoch {self.epoch + 1}/{cfg.optim.epochs}). Last good "
                                f"checkpoint: {self.last_checkpoint or 'none yet (no epoch finished)'}. Lower the lr, "
                                "try --amp bf16 or off, or check the data")
                    if not group_bad:
                        self.skipped_in_a_row = 0
                    lr = self.schedule.get_last_lr()[0]
                    self.optimizer.zero_grad(set_to_none=True)
                    self.schedule.step()
                    self.global_step += 1
                    self.step_in_epoch += 1
                    if cfg.runtime.max_steps is not None and self.global_step >= cfg.runtime.max_steps:
                        self.stop.request()
                    stats = torch.tensor([group_loss, group_hits, group_clips, 1.0 if self.stop.requested else 0.0],
                                         dtype=torch.float64, device=reduce_dev)
                    stats = all_reduce_sum(stats, info).cpu().tolist()
                    group_bad, group_loss, group_hits, group_clips = False, 0.0, 0.0, 0.0
                    for i in range(3):
                        self.epoch_stats[i] += stats[i]
                        window[i] += stats[i]
                    step_loss = stats[0] / stats[2] if stats[2] else float("nan")
                    progress.update(int(stats[2]), step_loss, lr, 100 * stats[1] / stats[2] if stats[2] else None)
                    if self.global_step % cfg.runtime.log_every == 0 or self.step_in_epoch == self.steps_per_epoch:
                        now = time.perf_counter()
                        self.metrics.write("train", self.global_step, epoch=self.epoch + self.step_in_epoch / self.steps_per_epoch,
                                           loss=window[0] / window[2] if window[2] else float("nan"),
                                           top1=100 * window[1] / window[2] if window[2] else float("nan"),
                                           lr=lr, clips_per_s=window[2] / max(now - t_window, 1e-9),
                                           elapsed_s=now - t_start)
                        window, t_window = [0.0, 0.0, 0.0], now
                    if stats[3] > 0:  # some rank was asked to stop: all ranks stop after this same update
                        stop_now = True
                        break
                stop_now = stop_now or batches.broken
                if not stop_now and self.step_in_epoch < self.steps_per_epoch:
                    raise RuntimeError(f"the data source ended epoch {self.epoch + 1} after batch {batch_index + 1}, "
                                       f"but num_train_batches() promised {self.batches_per_epoch}")
                if self.step_in_epoch >= self.steps_per_epoch:
                    self._end_epoch(progress)
                if stop_now:
                    status = "stopped"
                    self._stop(progress)
            if status == "done" and self.stop.signum is not None:
                # the signal came after the last step's check (during the final validation or checkpoint):
                # the final checkpoint is written, so report the stop as for any other signal
                status = "stopped"
                self._stop(progress)
        finally:
            progress.close()
        if info.is_main and cfg.runtime.plots and os.path.exists(os.path.join(self.out, "metrics.jsonl")):
            from .plots import plot_training  # matplotlib is slow to import: only when plotting

            plot_training(os.path.join(self.out, "metrics.jsonl"), self.out)
        self.metrics.close()
        return FitResult(status, self.epoch, self.global_step, self.last_checkpoint, self.last_val,
                         time.perf_counter() - t_start, self.skipped,
                         self.stop.signum if status == "stopped" else None)

    def _stop(self, progress: Progress) -> None:
        """Checkpoint (unless the epoch end just wrote one for this step) and note why we stopped."""
        cfg = self.cfg
        if cfg.runtime.max_steps is not None and self.global_step >= cfg.runtime.max_steps:
            why = f"max_steps={cfg.runtime.max_steps} reached"
        else:
            why = f"{self.stop.name or 'stop'} received"
        if not (self.last_checkpoint and os.path.basename(self.last_checkpoint) == ckpt.checkpoint_name(self.global_step)):
            broadcast_buffers(self.model, self.info)
            self.save()
        self.metrics.write("event", self.global_step, event="stopped", reason=why, checkpoint=self.last_checkpoint)
        progress.write(f"train: {why}: wrote {self.last_checkpoint} at step {self.global_step}; "
                       "continue with --resume auto")

    def _keep_best(self) -> None:
        """``<output>/best/``: the model with the best validation top-1 so far, as a model directory
        (config.json + model.safetensors, tdsclip.hub) that eval, predict and from_pretrained load."""
        from tdsclip.hub import can_save, keep_if_best

        if can_save(self.model) and keep_if_best(self.model, os.path.join(self.out, "best"), self.last_val["top1"],
                        class_names=list(getattr(self.data, "class_names", []) or []),
                        train_config=self.cfg.to_dict(), epoch=self.epoch + 1, global_step=self.global_step):
            self.metrics.write("event", self.global_step, event="best", top1=self.last_val["top1"],
                               path=os.path.join(self.out, "best"))

    def _end_epoch(self, progress: Progress) -> None:
        cfg = self.cfg
        loss_sum, hits, clips = self.epoch_stats
        record = {"epoch": self.epoch + 1, "train_loss": loss_sum / clips if clips else float("nan"),
                  "train_top1": 100 * hits / clips if clips else float("nan")}
        last_epoch = self.epoch + 1 == cfg.optim.epochs
        broadcast_buffers(self.model, self.info)  # every rank validates and ends with rank 0's BN statistics
        every = cfg.runtime.val_every
        if hasattr(self.data, "val_batches") and (last_epoch or (every and (self.epoch + 1) % every == 0)):
            self.last_val = validate(self.model, self.data.val_batches(), self.device, cfg.runtime.amp, self.info)
            if self.last_val["num"]:
                self.metrics.write("val", self.global_step, epoch=self.epoch + 1, **self.last_val)
                record.update({f"val_{k}": v for k, v in self.last_val.items()})
        if self.info.is_main and "val_top1" in record:
            self._keep_best()
        self.metrics.write("epoch", self.global_step, **record)
        progress.write("train: epoch {epoch}: loss {train_loss:.4f} top-1 {train_top1:.1f}%".format(**record)
                       + (f", val top-1 {self.last_val['top1']:.1f}% top-5 {self.last_val['top5']:.1f}% "
                          f"({self.last_val['num']} videos)" if self.last_val and "val_top1" in record else ""))
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_stats = [0.0, 0.0, 0.0]
        self.save()

