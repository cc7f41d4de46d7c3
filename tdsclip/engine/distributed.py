"""Process-group setup for ``torchrun`` (DistributedDataParallel), and the few collectives the
training loop needs.

``torchrun --nproc_per_node N -m tdsclip.train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT; a plain ``python -m tdsclip.train`` sets none of them and runs as a
single process (world size 1, no process group). NCCL on GPUs, Gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this rank's GPU when there is one, else CPU; ``cuda`` → ``cuda:<local_rank>``."""
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(requested)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: no CUDA device is visible (torch.cuda.is_available() is False)")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def init_distributed(requested_device: str = "auto") -> DistInfo:
    """Joins the process group when launched by torchrun; otherwise a single-process DistInfo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size <= 1:
        return DistInfo(0, 1, 0, device, None)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank, world_size, local_rank, device, backend)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks (in place); a no-op for one process."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (e.g. the checkpoint path chosen by rank 0)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order, on every rank (used for per-rank RNG states)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copies rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    DDP does this at the start of each forward, so during training rank 0's buffers are the
    authoritative ones; after the last forward of an epoch each rank holds its own update. Syncing
    before validation and checkpoints makes every rank evaluate and hold the same model."""
    if not info.enabled:
        return
    for b in module.buffers():
        if info.backend == "nccl" or b.device.type == "cpu":
            dist.broadcast(b.data, src=src)
        else:
            tmp = b.data.cpu()
            dist.broadcast(tmp, src=src)
            b.data.copy_(tmp)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()
