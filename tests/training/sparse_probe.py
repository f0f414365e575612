"""A few training steps of a small AFM on 2 gloo processes, dense and sparse tables.

Run as `torchrun --standalone --nproc-per-node=2 tests/training/sparse_probe.py OUT_DIR`: every
rank trains each case from the same initial weights on its own half of the same batches
(`batches`) and saves its final weights, optimizer and exchanged bytes per step to
OUT_DIR/<case>-rank-<r>.pt; tests/training/test_sparse.py compares them.
"""

import gc
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from model.afm import AFM, ModelConfig
from training import sparse
from training.config import TrainSection
from training.loop import EpochProgress, train_one_epoch
from training.optim import make_optimizer
from training.shards import Batch

CONFIG = ModelConfig(kind="afm", num_features=500, num_fields=4, embed_dim=6, attention_dim=5,
                     pair_dropout=0.0)
STEPS, ROWS = 4, 32  # rows per step, all ranks together


def batches(rank: int = 0, world: int = 1) -> list[Batch]:
    """The same batches on every rank (a seeded generator); rank r takes rows r, r + W, ...
    Fields draw from their own fifth of the table, so most rows stay untouched."""
    generator = torch.Generator().manual_seed(7)
    out = []
    for _ in range(STEPS):
        indices = torch.randint(1, 100, (ROWS, CONFIG.num_fields, 1), generator=generator)
        indices += 100 * torch.arange(CONFIG.num_fields).view(1, -1, 1)
        weights = torch.ones(ROWS, CONFIG.num_fields, 1)
        labels = torch.randn(ROWS, generator=generator)
        out.append(Batch(indices[rank::world], weights[rank::world], labels[rank::world]))
    return out


def model() -> AFM:
    torch.manual_seed(3)
    return AFM(CONFIG)


ADAM = TrainSection(optimizer="adam", lr=0.05, embedding_l2=0.1, micro_batch_size=5)
CASES = {  # name -> (sparse tables, config); the sgd cases take torch.optim.SGD at `lr`
    "sgd-dense": (False, TrainSection(lr=0.05, embedding_l2=0.1)),
    "sgd-sparse": (True, TrainSection(lr=0.05, embedding_l2=0.1)),
    "adam-sparse": (True, ADAM),
    "adam-sparse-again": (True, ADAM),
    "adagrad-dense": (False, TrainSection(optimizer="adagrad", lr=0.05)),
    "adagrad-sparse": (True, TrainSection(optimizer="adagrad", lr=0.05)),
}


def run_case(name: str, out: Path) -> None:
    use_sparse, cfg = CASES[name]
    net = model()
    if use_sparse:
        sparse.make_sparse(net)
    exchanged = sparse.Exchanged()
    ddp = DistributedDataParallel(net)
    sparse.count_exchange(ddp, exchanged)
    if name.startswith("sgd"):
        optimizer: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    else:
        optimizer = make_optimizer(net, cfg, use_sparse)
    train_one_epoch(ddp, batches(dist.get_rank(), dist.get_world_size()), optimizer, "regression", cfg,
                    EpochProgress())
    torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "bytes_per_step": exchanged.take()}, out / f"{name}-rank-{dist.get_rank()}.pt")


if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    for case in CASES:
        run_case(case, Path(sys.argv[1]))
    # Every rank done, and every DDP reducer gone, before the group goes: a rank that
    # destroys it while the other's last collective or a reducer's hook is in flight can
    # abort in gloo ("terminate called without an active exception").
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
