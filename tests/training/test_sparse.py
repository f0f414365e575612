"""Sparse tables: the sparse exchange and optimizers against the dense ones."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import torch

from model.afm import AFM, ModelConfig
from tests.helpers import REPO
from tests.training import sparse_probe
from training import sparse
from training.config import TrainSection
from training.distributed import Context
from training.loop import EpochProgress, train_one_epoch
from training.optim import make_optimizer, make_schedule


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case of tests/training/sparse_probe.py, trained once on 2 gloo processes."""
    out = tmp_path_factory.mktemp("probe")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(REPO / "tests" / "training" / "sparse_probe.py"), str(out)]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:6000]
    return out


def _load(out: Path, case: str, rank: int = 0) -> dict:
    return torch.load(out / f"{case}-rank-{rank}.pt", weights_only=True)


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0.0, atol=atol, msg=key)


@pytest.mark.slow
def test_the_sparse_exchange_updates_sgd_exactly_as_the_dense_all_reduce(probed: Path) -> None:
    dense, sparse_run = _load(probed, "sgd-dense"), _load(probed, "sgd-sparse")
    _assert_same_weights(dense["model"], sparse_run["model"])
    _assert_same_weights(sparse_run["model"], _load(probed, "sgd-sparse", rank=1)["model"])


@pytest.mark.slow
def test_sparse_adagrad_is_dense_adagrad_on_two_processes(probed: Path) -> None:
    _assert_same_weights(_load(probed, "adagrad-dense")["model"], _load(probed, "adagrad-sparse")["model"],
                         atol=1e-6)


@pytest.mark.slow
def test_two_processes_of_lazy_adam_match_one_process_on_the_whole_batch(probed: Path) -> None:
    cfg = sparse_probe.CASES["adam-sparse"][1]
    model = sparse_probe.model()
    sparse.make_sparse(model)
    train_one_epoch(model, sparse_probe.batches(), make_optimizer(model, cfg, sparse=True), "regression",
                    cfg, EpochProgress())
    _assert_same_weights(_load(probed, "adam-sparse")["model"], model.state_dict(), atol=1e-5)


@pytest.mark.slow
def test_the_sparse_exchange_is_deterministic(probed: Path) -> None:
    _assert_same_weights(_load(probed, "adam-sparse")["model"], _load(probed, "adam-sparse-again")["model"])


@pytest.mark.slow
def test_the_exchanged_bytes_are_the_dense_gradients_or_the_touched_rows(probed: Path) -> None:
    model = sparse_probe.model()
    assert _load(probed, "sgd-dense")["bytes_per_step"] == sum(p.nbytes for p in model.parameters())
    table_ids = {id(t.weight) for t in sparse.tables(model)}
    dense_bytes = sum(p.nbytes for p in model.parameters() if id(p) not in table_ids)
    row_bytes = 8 + 4 * model.config.embed_dim + 8 + 4  # an index and a row, of each table
    touched = [len(torch.unique(b.indices)) for b in sparse_probe.batches(rank=0, world=2)]
    expected = dense_bytes + row_bytes * sum(touched) / len(touched)
    assert _load(probed, "sgd-sparse")["bytes_per_step"] == expected


def test_lazy_adam_leaves_untouched_rows_and_their_moments_alone() -> None:
    torch.manual_seed(0)
    cfg = TrainSection(optimizer="adam", lr=0.1)
    lazy, eager = AFM(sparse_probe.CONFIG), AFM(sparse_probe.CONFIG)
    eager.load_state_dict(lazy.state_dict())
    sparse.make_sparse(lazy)
    first, second = sparse_probe.batches()[:2]
    second = second._replace(indices=second.indices.clamp(min=401))  # only field 3's rows
    row = int(first.indices[0, 0, 0])  # field 0: touched by the first step only
    moments = []
    for model, is_sparse in ((lazy, True), (eager, False)):
        optimizer = make_optimizer(model, cfg, sparse=is_sparse)
        train_one_epoch(model, [first], optimizer, "regression", cfg, EpochProgress())
        after_first = model.embedding.embedding.weight[row].clone()
        train_one_epoch(model, [second], optimizer, "regression", cfg, EpochProgress())
        moved = not torch.equal(model.embedding.embedding.weight[row], after_first)
        assert moved != is_sparse  # dense Adam's decaying first moment moves it on
        moments.append(optimizer.state_dict())
    tables = moments[0]["tables"]["state"]
    assert tables[0]["step"] == 2  # the bias correction counts every step, touched or not


def test_lazy_adam_steps_as_torch_sparse_adam() -> None:
    torch.manual_seed(1)
    ours, theirs = torch.nn.Embedding(50, 3, sparse=True), torch.nn.Embedding(50, 3, sparse=True)
    theirs.load_state_dict(ours.state_dict())
    optimizers = [sparse.LazyAdam(list(ours.parameters()), lr=0.1),
                  torch.optim.SparseAdam(list(theirs.parameters()), lr=0.1)]
    for step in range(5):
        rows = torch.randint(0, 50 if step % 2 else 10, (20,))  # repeats, and steps that skip rows
        for table, optimizer in zip((ours, theirs), optimizers, strict=True):
            optimizer.zero_grad()
            table(rows).pow(3).sum().backward()
            optimizer.step()
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=0.0, atol=1e-6)


def test_a_schedule_sets_the_rates_of_both_optimizers_and_the_state_round_trips() -> None:
    model = AFM(sparse_probe.CONFIG)
    cfg = TrainSection(optimizer="adam", lr=0.1, attention_lr=0.2, warmup_epochs=1)
    optimizer = make_optimizer(model, cfg, sparse=True)
    make_schedule(optimizer, cfg, steps_per_epoch=4)
    rates = [g["lr"] for o in optimizer.optimizers.values() for g in o.param_groups]  # type: ignore[attr-defined]
    assert rates == pytest.approx([0.1 / 5, 0.1 / 5, 0.2 / 5])
    sparse.make_sparse(model)
    train_one_epoch(model, sparse_probe.batches()[:1], optimizer, "regression", cfg, EpochProgress())
    again = make_optimizer(model, cfg, sparse=True)
    again.load_state_dict(optimizer.state_dict())
    saved = optimizer.state_dict()["tables"]["state"][0]
    assert torch.equal(again.state_dict()["tables"]["state"][0]["exp_avg_sq"], saved["exp_avg_sq"])
    with pytest.raises(ValueError, match="optimizer state for"):
        again.load_state_dict({"dense": saved})


@pytest.mark.parametrize(("setting", "rows", "backend", "expected"), [
    ("auto", 100_000, "gloo", False),
    ("auto", 10_000_000, "gloo", True),
    ("auto", 10_000_000, "", True),
    ("auto", 10_000_000, "nccl", False),
    (False, 10_000_000, "gloo", False),
    (True, 1_000, "gloo", True),
])
def test_auto_turns_sparse_tables_on_for_tables_much_larger_than_a_step(
    setting: Literal["auto"] | bool, rows: int, backend: str, expected: bool
) -> None:
    model = AFM(ModelConfig(kind="afm", num_features=rows, num_fields=3, embed_dim=1))
    cfg = TrainSection(sparse_tables=setting)
    lookups = 4096 * 39
    assert sparse.resolve(cfg, model, lookups, Context(0, 2, backend)) is expected


def test_sparse_tables_refuse_a_backend_without_sparse_all_reduce() -> None:
    model = AFM(ModelConfig(kind="afm", num_features=10, num_fields=3, embed_dim=1))
    with pytest.raises(ValueError, match="needs the gloo backend, not nccl"):
        sparse.resolve(TrainSection(sparse_tables=True), model, 100, Context(0, 2, "nccl"))
