"""Two CPU processes joined by gloo run the real pretraining loop under DDP: the data plane of a
`cluster.num_workers: 2` cell, without Ray. Each rank trains on its own half of every global
batch, the halves cover the batch, and after training both ranks hold the same weights, online
and momentum towers alike. (BatchNorm running statistics stay per rank: DDP broadcasts rank 0's
before each forward, and the cell evaluates rank 0's backbone.)"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from orchestrator.ray_exec import free_port
from workloads.pretrain import epoch_batches, pretrain

from test_methods_pretrain import cell

N, BATCH = 64, 16


def _images() -> torch.Tensor:
    return torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _worker(rank: int, world: int, port: int, method: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = cell(method)
        cfg["optim"]["batch_size"] = BATCH
        mine = [b.tolist() for b in epoch_batches(N, BATCH, cfg["seed"], 0)]  # what this rank trains on
        model = pretrain(cfg, _images(), wrap_model=torch.nn.parallel.DistributedDataParallel)
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        params.update({f"momentum:{k}": v.detach().clone() for online, ema in model.momentum_pairs()
                       for k, v in ema.named_parameters()})
        torch.save({"params": params, "batches": mine}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["moco_v2", "simclr"])
def test_two_ranks_split_every_batch_and_end_with_the_same_weights(method, tmp_path):
    mp.spawn(_worker, args=(2, free_port(), method, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    whole = [b.tolist() for b in epoch_batches(N, BATCH, cell(method)["seed"], 0)]  # one process, world 1
    assert len(r0["batches"]) == len(r1["batches"]) == len(whole) == N // BATCH
    for a, b, full in zip(r0["batches"], r1["batches"], whole):
        assert len(a) == len(b) == BATCH // 2 and not set(a) & set(b) and sorted(a + b) == sorted(full)
    assert r0["params"].keys() == r1["params"].keys()
    if method == "moco_v2":
        assert any(k.startswith("momentum:") for k in r0["params"])
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), f"{k} differs between the ranks"
