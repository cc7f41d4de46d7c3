"""DistributedDataParallel on 2 CPU processes with Gloo: both ranks end with identical weights.

Each rank trains on its own shard (the sampler splits every epoch's permutation), gradients are
averaged by DDP, metrics are all-reduced, and only rank 0 writes files. A NaN injected on rank 1
only must make *both* ranks skip that update (a rank that stepped alone would diverge).
"""
import os
import socket

import torch
import torch.multiprocessing as mp

from tdsclip.engine.sampler import shard_indices


from toy_models import ToyVideoNet  # tests/toy_models.py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from tdsclip.engine.config import from_dict
    from tdsclip.engine.datasource import TensorDataSource
    from tdsclip.engine.distributed import cleanup
    from tdsclip.run import run_training

    cfg = from_dict({"name": "ddp", "model": {"backbone": "tiny", "num_classes": 4, "side_dim": 64},
                     "data": {"batch_size": 4},
                     "optim": {"epochs": 2, "warmup_epochs": 1, "lr": 1e-2, "grad_accum": 2},
                     "runtime": {"output": out, "amp": "off", "device": "cpu", "progress": False, "plots": False,
                                 "on_nan": "skip", "seed": 5}})
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 2, 5, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (40,), generator=g)
    torch.manual_seed(100 + rank)  # different init per rank: DDP must broadcast rank 0's weights
    model = ToyVideoNet()
    data = TensorDataSource((x[:32], y[:32]), (x[32:], y[32:]), 4, seed=5, rank=rank, world=world)

    def nan_on_rank1(step, batch, loss):
        return loss * float("nan") if (rank == 1 and step == 2) else loss

    result, info = run_training(cfg, model=model, data=data, fault_hook=nan_on_rank1, log=lambda *a: None)
    assert info.world_size == world and info.backend == "gloo"
    torch.save({"state": model.state_dict(), "skipped": result.skipped_steps, "steps": result.global_step,
                "val": result.val}, os.path.join(out, f"rank{rank}.pt"))
    cleanup(info)


def test_shards_are_disjoint_and_cover_the_epoch():
    a = shard_indices(10, seed=1, epoch=3, rank=0, world=2)
    b = shard_indices(10, seed=1, epoch=3, rank=1, world=2)
    assert not set(a) & set(b) and sorted(a + b) == list(range(10))
    assert a != shard_indices(10, seed=1, epoch=4, rank=0, world=2)  # reshuffled per epoch
    assert a == shard_indices(10, seed=1, epoch=3, rank=0, world=2)  # but reproducibly


def test_gloo_two_processes_end_with_identical_weights(tmp_path):
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    r0 = torch.load(os.path.join(out, "rank0.pt"), weights_only=True)
    r1 = torch.load(os.path.join(out, "rank1.pt"), weights_only=True)
    assert r0["steps"] == r1["steps"] == 2 * (32 // 2 // 4 // 2)  # epochs x (shard / batch / accum)
    assert r0["skipped"] == r1["skipped"] == 1                    # rank 1's NaN skipped on both ranks
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # trained (not just broadcast): the head moved away from rank 0's initialisation
    torch.manual_seed(100)
    assert not torch.equal(ToyVideoNet().head.weight, r0["state"]["head.weight"])
    # all-reduced validation covers the whole validation set (4 + 4 videos) and agrees on both ranks
    assert r0["val"] == r1["val"] and r0["val"]["num"] == 8
    # only rank 0 wrote the run's files
    names = sorted(os.listdir(out))
    assert "metrics.jsonl" in names and "config.yaml" in names
    assert [n for n in names if n.startswith("checkpoint_step")] == ["checkpoint_step00000002.pt",
                                                                     "checkpoint_step00000004.pt"]
    state = torch.load(os.path.join(out, "checkpoint_step00000004.pt"), weights_only=True)
    assert len(state["rng"]) == 2 and state["world_size"] == 2
